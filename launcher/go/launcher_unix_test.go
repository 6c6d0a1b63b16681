//go:build unix

package launcher

import (
	"errors"
	"io"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

func TestAStartNotReadyInTimeFailsAndLeavesNothingRunning(t *testing.T) {
	bin := binary(t)
	// A policy "file" that is a FIFO nobody writes: egressd blocks opening it, before readiness.
	fifo := filepath.Join(t.TempDir(), "policy.toml")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := Start(bin, Options{Policy: fifo, ReadinessTimeout: 300 * time.Millisecond, Stderr: io.Discard})
	var timeout *ReadinessTimeoutError
	if !errors.As(err, &timeout) || timeout.After != 300*time.Millisecond {
		t.Fatalf("%v", err)
	}
	// Nobody has the FIFO open for reading any more: egressd was killed and reaped.
	file, err := os.OpenFile(fifo, os.O_WRONLY|syscall.O_NONBLOCK, 0)
	if err == nil {
		file.Close()
		t.Fatal("egressd still holds the policy FIFO")
	}
	if !errors.Is(err, syscall.ENXIO) {
		t.Fatalf("%v", err)
	}
}
