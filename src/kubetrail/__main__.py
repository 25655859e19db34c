from kubetrail.cli import main

main()
