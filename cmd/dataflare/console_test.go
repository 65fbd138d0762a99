package main

import (
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/dataflare/dataflare/internal/poll"
)

// checkConsole checks the web console a daemon serves on addr: its fleet
// page shows worker (once the coordinator has heard it), and, read-only, it
// refuses a POST.
func checkConsole(t *testing.T, addr, worker string) {
	t.Helper()
	want := fmt.Sprintf(`id="worker-%s"`, worker)
	poll.Wait(t, 10*time.Second, "the console's fleet page to show "+worker, func() bool {
		res, err := http.Get("http://" + addr + "/")
		if err != nil {
			return false
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		return res.StatusCode == http.StatusOK && strings.Contains(string(b), want)
	})
	res, err := http.Post("http://"+addr+"/jobs/x/cancel", "application/x-www-form-urlencoded", nil)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusForbidden {
		t.Errorf("POST to a read-only console: %d, want 403", res.StatusCode)
	}
}
