package launcher

import (
	"fmt"
	"os"
	"syscall"
	"time"
)

// egressd's exit codes (docs/launcher.md, "Exit codes").
const (
	// CodeClean is a clean shutdown: SIGTERM, SIGINT or stdin EOF, after the drain.
	CodeClean = 0
	// CodeBadInput is bad input (an invalid policy, a bad flag value), always before readiness.
	CodeBadInput = 2
	// CodeStartFailed is a failed start (address in use, socket path exists), always before
	// readiness.
	CodeStartFailed = 3
	// CodeRuntimeFailed is a listener that failed while running, or the audit log with
	// --on-audit-failure stop.
	CodeRuntimeFailed = 4
)

// Exit says how egressd ended.
type Exit struct {
	// Code is the exit code, or -1 if a signal ended egressd.
	Code int
	// Signal is the signal that ended egressd, or nil.
	Signal os.Signal
	// Killed says the launcher killed egressd: it had not exited by the stop's deadline.
	Killed bool
	// Stderr holds egressd's last lines on stderr.
	Stderr []string
}

// Clean says egressd shut down cleanly: exit code 0, not killed.
func (e Exit) Clean() bool { return e.Code == CodeClean && !e.Killed }

// LastStderrLine is egressd's last line on stderr, or "".
func (e Exit) LastStderrLine() string {
	if len(e.Stderr) == 0 {
		return ""
	}
	return e.Stderr[len(e.Stderr)-1]
}

// String says what the exit means.
func (e Exit) String() string {
	var what string
	switch {
	case e.Signal != nil:
		what = fmt.Sprintf("ended by signal %v", e.Signal)
	case e.Code == CodeClean:
		what = "exit code 0 (clean shutdown)"
	case e.Code == CodeBadInput:
		what = "exit code 2 (bad input)"
	case e.Code == CodeStartFailed:
		what = "exit code 3 (start-up failed)"
	case e.Code == CodeRuntimeFailed:
		what = "exit code 4 (failed while running)"
	default:
		what = fmt.Sprintf("exit code %d", e.Code)
	}
	if e.Killed {
		what += ", killed by the launcher"
	}
	return what
}

func exitOf(state *os.ProcessState, killed bool, stderr []string) Exit {
	exit := Exit{Code: -1, Killed: killed, Stderr: stderr}
	if state == nil {
		return exit
	}
	exit.Code = state.ExitCode()
	if status, ok := state.Sys().(syscall.WaitStatus); ok && status.Signaled() {
		exit.Signal = status.Signal()
	}
	return exit
}

// EarlyExitError is egressd exiting before its readiness line: bad input (2) or a failed start
// (3); its reason is on stderr.
type EarlyExitError struct {
	Exit Exit
}

func (e *EarlyExitError) Error() string {
	return fmt.Sprintf("egressd exited before readiness with %s: %s", e.Exit, lastOr(e.Exit.Stderr))
}

// ReadinessTimeoutError is no readiness line within the timeout; egressd was killed.
type ReadinessTimeoutError struct {
	// After is the timeout that passed.
	After time.Duration
	// Stderr holds egressd's last lines on stderr.
	Stderr []string
}

func (e *ReadinessTimeoutError) Error() string {
	return fmt.Sprintf("egressd was not ready within %s and was killed; its last words: %s", e.After, lastOr(e.Stderr))
}

// BadReadinessError is a first line on stdout that is not a readiness line (not egressd, or not
// `egressd run`); the process was killed. The line is not kept: it would carry the secret.
type BadReadinessError struct {
	Reason string
}

func (e *BadReadinessError) Error() string {
	return "egressd's first line on stdout is not a readiness line: " + e.Reason
}

func lastOr(lines []string) string {
	if len(lines) == 0 {
		return "(nothing on stderr)"
	}
	return lines[len(lines)-1]
}
