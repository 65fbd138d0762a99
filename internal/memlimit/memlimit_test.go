package memlimit

import (
	"os"
	"path/filepath"
	"runtime/debug"
	"testing"
)

// fsTree writes files under a temporary root and returns it.
func fsTree(t *testing.T, files map[string]string) string {
	t.Helper()
	root := t.TempDir()
	for name, content := range files {
		p := filepath.Join(root, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return root
}

func TestCgroup(t *testing.T) {
	for _, tt := range []struct {
		name   string
		files  map[string]string
		want   int64
		source Source
	}{
		{"v2, the process's cgroup", map[string]string{
			"proc/self/cgroup": "0::/system.slice/worker.service\n",
			"sys/fs/cgroup/system.slice/worker.service/memory.max": "536870912\n",
			"sys/fs/cgroup/memory.max":                             "max\n",
		}, 512 << 20, CgroupV2},
		{"v2 in a container: the mount's root", map[string]string{
			"proc/self/cgroup":         "0::/\n",
			"sys/fs/cgroup/memory.max": "268435456\n",
		}, 256 << 20, CgroupV2},
		{"v2 without a limit", map[string]string{
			"proc/self/cgroup":         "0::/\n",
			"sys/fs/cgroup/memory.max": "max\n",
		}, 0, None},
		{"v1", map[string]string{
			"proc/self/cgroup": "12:memory:/docker/abc\n11:cpu,cpuacct:/docker/abc\n",
			"sys/fs/cgroup/memory/docker/abc/memory.limit_in_bytes": "1073741824\n",
		}, 1 << 30, CgroupV1},
		{"v1 without a limit", map[string]string{
			"proc/self/cgroup":                           "12:memory:/\n",
			"sys/fs/cgroup/memory/memory.limit_in_bytes": "9223372036854771712\n",
		}, 0, None},
		{"no cgroup file system", map[string]string{}, 0, None},
		{"garbage", map[string]string{
			"proc/self/cgroup":         "0::/\n",
			"sys/fs/cgroup/memory.max": "lots\n",
		}, 0, None},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got, src := Cgroup(fsTree(t, tt.files))
			if got != tt.want || src != tt.source {
				t.Errorf("Cgroup = %d, %s; want %d, %s", got, src, tt.want, tt.source)
			}
		})
	}
}

// The Go memory limit comes first.
func TestFindGoMemLimit(t *testing.T) {
	old := debug.SetMemoryLimit(-1)
	defer debug.SetMemoryLimit(old)
	debug.SetMemoryLimit(300 << 20)
	if n, src := Find(); n != 300<<20 || src != GoMemLimit {
		t.Errorf("Find = %d, %s; want 300 MiB from GOMEMLIMIT", n, src)
	}
}
