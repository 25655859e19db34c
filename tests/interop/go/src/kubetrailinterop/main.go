// kubetrailinterop checks kubetrail's signed checkpoints and proofs with Go's reference code:
// golang.org/x/mod/sumdb/note opens the checkpoints with the verifier key and
// golang.org/x/mod/sumdb/tlog checks inclusion and consistency proofs and recomputes roots.
// It shares no code with kubetrail. Build offline in GOPATH mode (Debian golang-golang-x-mod-dev):
//
//	GOPATH=$PWD/tests/interop/go:/usr/share/gocode GO111MODULE=off go build -o kt-interop kubetrailinterop
//
// Input (stdin): JSON {"vkey", "checkpoints": [note...], "bad_checkpoints": [note...],
// "inclusion": [proof...], "consistency": [proof...], "leaves": [hex...]} as printed by the
// kubetrail CLI. Output: one JSON summary line; exit status 1 on the first disagreement.
package main

import (
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"strconv"
	"strings"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
)

type inclusion struct {
	Index      int64    `json:"index"`
	Size       int64    `json:"size"`
	LeafHash   string   `json:"leaf_hash"`
	Root       string   `json:"root"`
	Hashes     []string `json:"hashes"`
	Checkpoint *string  `json:"checkpoint"`
}

type consistency struct {
	Old     int64    `json:"old"`
	New     int64    `json:"new"`
	OldRoot string   `json:"old_root"`
	NewRoot string   `json:"new_root"`
	Hashes  []string `json:"hashes"`
}

type input struct {
	Vkey           string        `json:"vkey"`
	Checkpoints    []string      `json:"checkpoints"`
	BadCheckpoints []string      `json:"bad_checkpoints"`
	Inclusion      []inclusion   `json:"inclusion"`
	Consistency    []consistency `json:"consistency"`
	Leaves         []string      `json:"leaves"`
}

func fail(format string, args ...interface{}) {
	fmt.Fprintf(os.Stderr, "FAIL: "+format+"\n", args...)
	os.Exit(1)
}

func hash(s string) tlog.Hash {
	b, err := hex.DecodeString(s)
	if err != nil || len(b) != tlog.HashSize {
		fail("bad hash %q", s)
	}
	var h tlog.Hash
	copy(h[:], b)
	return h
}

func hashes(list []string) []tlog.Hash {
	out := make([]tlog.Hash, len(list))
	for i, s := range list {
		out[i] = hash(s)
	}
	return out
}

// openCheckpoint verifies the note with the log key and parses the C2SP tlog-checkpoint body.
func openCheckpoint(text string, verifiers note.Verifiers) (string, int64, tlog.Hash, error) {
	n, err := note.Open([]byte(text), verifiers)
	if err != nil {
		return "", 0, tlog.Hash{}, err
	}
	lines := strings.Split(n.Text, "\n")
	if len(lines) != 4 || lines[3] != "" {
		return "", 0, tlog.Hash{}, fmt.Errorf("checkpoint body is not three lines")
	}
	size, err := strconv.ParseInt(lines[1], 10, 64)
	if err != nil || size < 0 {
		return "", 0, tlog.Hash{}, fmt.Errorf("bad size %q", lines[1])
	}
	root, err := base64.StdEncoding.DecodeString(lines[2])
	if err != nil || len(root) != tlog.HashSize {
		return "", 0, tlog.Hash{}, fmt.Errorf("bad root %q", lines[2])
	}
	if n.Sigs[0].Name != lines[0] {
		return "", 0, tlog.Hash{}, fmt.Errorf("key name %q differs from origin %q", n.Sigs[0].Name, lines[0])
	}
	var h tlog.Hash
	copy(h[:], root)
	return lines[0], size, h, nil
}

func main() {
	var in input
	if err := json.NewDecoder(os.Stdin).Decode(&in); err != nil {
		fail("reading input: %v", err)
	}
	v, err := note.NewVerifier(in.Vkey)
	if err != nil {
		fail("verifier key: %v", err)
	}
	verifiers := note.VerifierList(v)
	roots := map[int64]tlog.Hash{}
	for _, text := range in.Checkpoints {
		_, size, root, err := openCheckpoint(text, verifiers)
		if err != nil {
			fail("checkpoint does not open: %v\n%s", err, text)
		}
		roots[size] = root
	}
	for _, text := range in.BadCheckpoints {
		if _, _, _, err := openCheckpoint(text, verifiers); err == nil {
			fail("a tampered checkpoint opened:\n%s", text)
		}
	}
	for _, p := range in.Inclusion {
		root := hash(p.Root)
		if p.Checkpoint != nil {
			_, size, cpRoot, err := openCheckpoint(*p.Checkpoint, verifiers)
			if err != nil || size != p.Size || cpRoot != root {
				fail("inclusion proof %d@%d: its checkpoint does not match (%v)", p.Index, p.Size, err)
			}
		}
		if err := tlog.CheckRecord(hashes(p.Hashes), p.Size, root, p.Index, hash(p.LeafHash)); err != nil {
			fail("inclusion proof %d@%d rejected by tlog.CheckRecord: %v", p.Index, p.Size, err)
		}
		bad := hash(p.LeafHash)
		bad[0] ^= 1
		if tlog.CheckRecord(hashes(p.Hashes), p.Size, root, p.Index, bad) == nil {
			fail("inclusion proof %d@%d accepted a wrong leaf", p.Index, p.Size)
		}
	}
	for _, p := range in.Consistency {
		if p.Old == 0 || p.Old == p.New {
			continue // policy cases (empty proof); tlog has no notion of them
		}
		if err := tlog.CheckTree(hashes(p.Hashes), p.New, hash(p.NewRoot), p.Old, hash(p.OldRoot)); err != nil {
			fail("consistency proof %d->%d rejected by tlog.CheckTree: %v", p.Old, p.New, err)
		}
	}
	var stored []tlog.Hash
	reader := tlog.HashReaderFunc(func(idx []int64) ([]tlog.Hash, error) {
		out := make([]tlog.Hash, len(idx))
		for i, x := range idx {
			out[i] = stored[x]
		}
		return out, nil
	})
	rootsChecked := 0
	for i, leaf := range in.Leaves {
		more, err := tlog.StoredHashesForRecordHash(int64(i), hash(leaf), reader)
		if err != nil {
			fail("stored hashes: %v", err)
		}
		stored = append(stored, more...)
		n := int64(i + 1)
		if want, ok := roots[n]; ok {
			got, err := tlog.TreeHash(n, reader)
			if err != nil || got != want {
				fail("tlog.TreeHash(%d) = %v, the signed checkpoint says %v", n, got, want)
			}
			rootsChecked++
		}
	}
	fmt.Printf("{\"ok\": true, \"checkpoints\": %d, \"inclusion\": %d, \"consistency\": %d, \"roots_recomputed\": %d}\n",
		len(in.Checkpoints), len(in.Inclusion), len(in.Consistency), rootsChecked)
}
