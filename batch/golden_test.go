package batch

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/dataflare/dataflare/plugin"
	"github.com/google/go-cmp/cmp"
)

var update = flag.Bool("update", false, "rewrite testdata/*.bin from the encoders")

// golden is one vector in testdata: how to encode it and what it decodes to.
type golden struct {
	file   string
	encode func() ([]byte, error)
	decode func([]byte) (any, error)
	want   any
}

func goldens() []golden {
	batchOf := func(b *Batch) golden {
		return golden{
			encode: func() ([]byte, error) { return AppendBatch(nil, b) },
			decode: func(d []byte) (any, error) { var got Batch; err := DecodeBatch(d, &got); return &got, err },
			want:   b,
		}
	}
	resultsOf := func(r *ResultSet) golden {
		return golden{
			encode: func() ([]byte, error) { return AppendResults(nil, r) },
			decode: func(d []byte) (any, error) { var got ResultSet; err := DecodeResults(d, &got); return &got, err },
			want:   r,
		}
	}
	named := func(name string, g golden) golden { g.file = name; return g }
	in := []plugin.Record{{Value: []byte("a")}, {Value: []byte("b")}, {Value: []byte("c")}}
	return []golden{
		named("batch-empty.bin", batchOf(&Batch{})),
		named("batch-example.bin", batchOf(exampleBatch())),
		named("batch-full.bin", batchOf(fullBatch())),
		named("results-empty.bin", resultsOf(&ResultSet{})),
		named("results-example.bin", resultsOf(exampleResults())),
		named("results-full.bin", resultsOf(fullResults())),
		{
			file:   "entries-example.bin",
			encode: func() ([]byte, error) { return exampleEntries(), nil },
			decode: func(d []byte) (any, error) {
				got := make([]plugin.Result, len(in))
				return got, DecodeEntries(d, in, got)
			},
			want: []plugin.Result{
				plugin.Value([]byte("X")),
				plugin.Value([]byte("b")),
				plugin.Fail(&plugin.Error{Code: plugin.CodeInvalidInput, Message: "no"}),
			},
		},
	}
}

// TestGolden encodes known values and compares the bytes with testdata/*.bin
// (go test -run TestGolden -update rewrites them), then decodes the files.
func TestGolden(t *testing.T) {
	for _, g := range goldens() {
		t.Run(g.file, func(t *testing.T) {
			path := filepath.Join("testdata", g.file)
			enc, err := g.encode()
			if err != nil {
				t.Fatalf("encode: %v", err)
			}
			if *update {
				if err := os.WriteFile(path, enc, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%v (run with -update to create it)", err)
			}
			if !bytes.Equal(enc, want) {
				t.Errorf("encoding differs from %s:\n got %x\nwant %x", path, enc, want)
			}
			got, err := g.decode(want)
			if err != nil {
				t.Fatalf("decode %s: %v", path, err)
			}
			if diff := cmp.Diff(g.want, got, cmpOpts...); diff != "" {
				t.Errorf("decode %s mismatch (-want +got):\n%s", path, diff)
			}
		})
	}
}

// TestDocExamples checks that the annotated hex dumps in
// docs/wire-format.md are the golden vectors: each dump follows a line
// "<!-- testdata/NAME.bin -->" and holds the bytes as two-digit hex before
// its annotation (separated by two or more spaces).
func TestDocExamples(t *testing.T) {
	doc, err := os.ReadFile(filepath.Join("..", "docs", "wire-format.md"))
	if err != nil {
		t.Skipf("no docs/wire-format.md: %v", err)
	}
	marker := regexp.MustCompile("(?m)^<!-- testdata/([a-z-]+\\.bin) -->\n```[a-z]*\n((?s:.*?))```")
	found := marker.FindAllSubmatch(doc, -1)
	if len(found) < 3 {
		t.Fatalf("found %d hex examples in docs/wire-format.md, want at least 3", len(found))
	}
	for _, m := range found {
		name, block := string(m[1]), string(m[2])
		t.Run(name, func(t *testing.T) {
			var got []byte
			for line := range strings.Lines(block) {
				hex, _, _ := strings.Cut(strings.TrimSpace(line), "  ")
				for f := range strings.FieldsSeq(hex) {
					v, err := strconv.ParseUint(f, 16, 8)
					if err != nil || len(f) != 2 {
						t.Fatalf("line %q: %q is not a hex byte", line, f)
					}
					got = append(got, byte(v))
				}
			}
			want, err := os.ReadFile(filepath.Join("testdata", name))
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("the doc's dump differs from testdata/%s:\n doc %x\nfile %x", name, got, want)
			}
		})
	}
}
