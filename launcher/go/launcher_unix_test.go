//go:build unix

package launcher

import (
	"errors"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestAStartNotReadyInTimeFailsAndLeavesNothingRunning(t *testing.T) {
	// egressd itself reaches readiness or exits promptly (even a FIFO as its policy is refused at
	// once), so the sidecar that never gets ready is a stand-in: it notes its pid, then waits.
	dir := t.TempDir()
	pidFile := filepath.Join(dir, "pid")
	standIn := filepath.Join(dir, "never-ready")
	script := "#!/bin/sh\necho $$ > '" + pidFile + "'\nexec sleep 600\n"
	if err := os.WriteFile(standIn, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	_, err := Start(standIn, Options{ReadinessTimeout: 2 * time.Second, Stderr: io.Discard})
	var timeout *ReadinessTimeoutError
	if !errors.As(err, &timeout) || timeout.After != 2*time.Second {
		t.Fatalf("%v", err)
	}
	// The stand-in started, and is gone now: killed and reaped, not left running.
	text, err := os.ReadFile(pidFile)
	if err != nil {
		t.Fatalf("the stand-in did not run: %v", err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(text)))
	if err != nil {
		t.Fatal(err)
	}
	if err := syscall.Kill(pid, 0); !errors.Is(err, syscall.ESRCH) {
		t.Fatalf("the sidecar that was not ready is still there (kill 0: %v)", err)
	}
}
