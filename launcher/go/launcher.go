package launcher

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"
)

const (
	// DefaultReadinessTimeout is how long Start waits for the readiness line by default.
	DefaultReadinessTimeout = 10 * time.Second
	// DefaultDrainTimeout is egressd's own default --drain-timeout.
	DefaultDrainTimeout = 10 * time.Second
	// StopGrace is how long Stop waits beyond the drain timeout before it kills egressd:
	// egressd still writes its last audit events and removes its files after the drain.
	StopGrace = 5 * time.Second
	// CloseGrace is how long Close waits after SIGTERM before it kills egressd.
	CloseGrace = 2 * time.Second
	// StderrTail is how many of egressd's last stderr lines are kept for errors and Exit.
	StderrTail = 16

	readyLineLimit  = 1 << 20
	stderrLineLimit = 64 << 10
)

// Options are `egressd run`'s flags, typed (docs/launcher.md, "Start"), and the kit's own
// settings. The zero value runs egressd with its defaults: the built-in policy, a generated
// proxy credential, ports picked at start; and the kit's: egressd exits when the launcher lets go
// of its stdin, readiness within DefaultReadinessTimeout, stderr to the launcher's stderr.
//
// egressd gets the launcher's environment without any EGRESSD_* variable: egressd reads those as
// flags, and only these options should decide how it runs.
type Options struct {
	Policy              string   // --policy FILE
	SandboxID           string   // --sandbox-id ID
	ProxyListen         string   // --proxy-listen ADDR (default 127.0.0.1:0)
	ProxyUnix           string   // --proxy-unix PATH
	ProxyUnixMode       string   // --proxy-unix-mode OCTAL, e.g. "660"
	DNSListen           string   // --dns-listen ADDR (default 127.0.0.1:0)
	DNSUnix             string   // --dns-unix PATH
	NoDNS               bool     // --no-dns
	ProxyCredentialFile string   // --proxy-credential-file FILE
	NoProxyCredential   bool     // --no-proxy-credential: only when nothing but the sandbox reaches the proxy
	Mode                string   // --mode enforce|report
	MetricsListen       string   // --metrics-listen ADDR
	Headers             []string // --header 'Name: value', each
	LogFormat           string   // --log-format text|json
	LogLevel            string   // --log-level
	AuditLog            string   // --audit-log PATH (not "-": stdout after the readiness line is dropped)
	ReadyFile           string   // --ready-file PATH
	ParentProxy         string   // --parent-proxy IP:PORT
	ParentProxyAuth     string   // --parent-proxy-auth VALUE
	InspectCACert       string   // --inspect-ca-cert FILE
	InspectCAKey        string   // --inspect-ca-key FILE
	InspectUpstreamRoot string   // --inspect-upstream-roots FILE
	// ExtraArgs are flags the kit does not type (limits, --threads), passed as they are.
	ExtraArgs []string

	// DrainTimeout is --drain-timeout: how long open connections may finish after a stop
	// (0: DefaultDrainTimeout). Stop kills egressd if it has not exited StopGrace after it.
	DrainTimeout time.Duration
	// NoExitOnStdinEOF turns off --exit-on-stdin-eof: egressd's stdin is then /dev/null and only
	// a signal stops it. By default the Sidecar holds the pipe: if the launcher dies, egressd
	// follows.
	NoExitOnStdinEOF bool
	// ReadinessTimeout is how long to wait for the readiness line (0: DefaultReadinessTimeout).
	ReadinessTimeout time.Duration
	// Stderr receives egressd's stderr (its log, and audit events without AuditLog), line by line
	// (nil: the launcher's os.Stderr; io.Discard to drop it).
	Stderr io.Writer
}

func (o *Options) args() []string {
	args := []string{"run"}
	add := func(flag, value string) {
		if value != "" {
			args = append(args, flag, value)
		}
	}
	flag := func(flag string, on bool) {
		if on {
			args = append(args, flag)
		}
	}
	add("--policy", o.Policy)
	add("--sandbox-id", o.SandboxID)
	add("--proxy-listen", o.ProxyListen)
	add("--proxy-unix", o.ProxyUnix)
	add("--proxy-unix-mode", o.ProxyUnixMode)
	add("--dns-listen", o.DNSListen)
	add("--dns-unix", o.DNSUnix)
	flag("--no-dns", o.NoDNS)
	add("--proxy-credential-file", o.ProxyCredentialFile)
	flag("--no-proxy-credential", o.NoProxyCredential)
	add("--mode", o.Mode)
	add("--metrics-listen", o.MetricsListen)
	for _, header := range o.Headers {
		args = append(args, "--header", header)
	}
	add("--log-format", o.LogFormat)
	add("--log-level", o.LogLevel)
	add("--audit-log", o.AuditLog)
	add("--ready-file", o.ReadyFile)
	add("--parent-proxy", o.ParentProxy)
	add("--parent-proxy-auth", o.ParentProxyAuth)
	add("--inspect-ca-cert", o.InspectCACert)
	add("--inspect-ca-key", o.InspectCAKey)
	add("--inspect-upstream-roots", o.InspectUpstreamRoot)
	args = append(args, o.ExtraArgs...)
	args = append(args, "--drain-timeout", fmt.Sprintf("%dms", o.drain().Milliseconds()))
	flag("--exit-on-stdin-eof", !o.NoExitOnStdinEOF)
	return args
}

func (o *Options) drain() time.Duration {
	if o.DrainTimeout > 0 {
		return o.DrainTimeout
	}
	return DefaultDrainTimeout
}

// Sidecar is a ready egressd. Stop it with Stop, or Close (for defer).
type Sidecar struct {
	cmd          *exec.Cmd
	stdin        io.WriteCloser
	ready        Ready
	stderr       *lineWriter
	stopDeadline time.Duration
	done         chan struct{} // closed once egressd has exited and its output is read

	mu     sync.Mutex
	killed bool
	exit   *Exit
}

// Start runs `egressd run` at binary (a path, or a name looked up in PATH) and waits for its
// readiness line. It returns a Sidecar only once egressd is ready; on any error no egressd is
// left running.
func Start(binary string, opts Options) (*Sidecar, error) {
	cmd := exec.Command(binary, opts.args()...)
	cmd.Env = withoutEgressdVariables(os.Environ())
	first := &firstLine{line: make(chan []byte, 1)}
	cmd.Stdout = first
	sink := opts.Stderr
	if sink == nil {
		sink = os.Stderr
	}
	stderr := &lineWriter{sink: sink}
	cmd.Stderr = stderr
	var stdin io.WriteCloser
	if !opts.NoExitOnStdinEOF {
		var err error
		if stdin, err = cmd.StdinPipe(); err != nil {
			return nil, fmt.Errorf("cannot start %s: %w", binary, err)
		}
	}
	timeout := opts.ReadinessTimeout
	if timeout <= 0 {
		timeout = DefaultReadinessTimeout
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("cannot start %s: %w", binary, err)
	}
	s := &Sidecar{
		cmd:          cmd,
		stdin:        stdin,
		stderr:       stderr,
		stopDeadline: opts.drain() + StopGrace,
		done:         make(chan struct{}),
	}
	go func() {
		// Wait returns once egressd exited and exec has copied all of its output.
		_ = cmd.Wait()
		stderr.flush()
		close(s.done)
	}()

	timer := time.NewTimer(timeout)
	defer timer.Stop()
	select {
	case line := <-first.line:
		if line == nil {
			s.kill()
			return nil, &BadReadinessError{Reason: "it is longer than any readiness line"}
		}
		ready, err := ParseReady(line)
		if err != nil {
			s.kill()
			return nil, err
		}
		s.ready = ready
		return s, nil
	case <-s.done:
		return nil, &EarlyExitError{Exit: s.finish()}
	case <-timer.C:
		s.kill()
		return nil, &ReadinessTimeoutError{After: timeout, Stderr: stderr.tail()}
	}
}

// Ready is the readiness line.
func (s *Sidecar) Ready() Ready { return s.ready }

// Pid is egressd's process id.
func (s *Sidecar) Pid() int { return s.cmd.Process.Pid }

// Done is closed when egressd has exited. A launcher selects on it while the job runs: egressd
// exiting early (code 4) leaves the job without its proxy.
func (s *Sidecar) Done() <-chan struct{} { return s.done }

// Exit says how egressd ended, and false while it runs.
func (s *Sidecar) Exit() (Exit, bool) {
	select {
	case <-s.done:
		return s.finish(), true
	default:
		return Exit{}, false
	}
}

// StderrTail returns egressd's last lines on stderr so far.
func (s *Sidecar) StderrTail() []string { return s.stderr.tail() }

// CloseStdin lets go of egressd's stdin: with --exit-on-stdin-eof (the default) egressd then
// stops as on SIGTERM. Wait for it with WaitWithin.
func (s *Sidecar) CloseStdin() error {
	if s.stdin == nil {
		return nil
	}
	return s.stdin.Close()
}

// Terminate sends SIGTERM (egressd stops accepting and drains), without waiting. It is harmless
// once egressd has exited. Where SIGTERM cannot be sent (no signals on the platform), it kills
// egressd rather than leave it running.
func (s *Sidecar) Terminate() error {
	err := s.cmd.Process.Signal(syscall.SIGTERM)
	if err != nil && !errors.Is(err, os.ErrProcessDone) {
		s.kill()
	}
	return nil
}

// Stop stops egressd: SIGTERM, then waits for the drain (--drain-timeout) plus StopGrace, then
// kills it. A second Stop returns the first one's Exit.
func (s *Sidecar) Stop() (Exit, error) { return s.StopWithin(s.stopDeadline) }

// StopWithin stops egressd as Stop does, killing it if it has not exited within deadline of the
// SIGTERM.
func (s *Sidecar) StopWithin(deadline time.Duration) (Exit, error) {
	if exit, ok := s.Exit(); ok {
		return exit, nil
	}
	if err := s.Terminate(); err != nil {
		return Exit{}, err
	}
	return s.WaitWithin(deadline), nil
}

// WaitWithin waits for egressd to exit (after Terminate or CloseStdin), killing it if it has not
// within deadline.
func (s *Sidecar) WaitWithin(deadline time.Duration) Exit {
	timer := time.NewTimer(deadline)
	defer timer.Stop()
	select {
	case <-s.done:
	case <-timer.C:
		s.kill()
	}
	return s.finish()
}

// Close stops egressd with a short grace (CloseGrace), for defer: egressd never outlives the
// launcher's function. Only Stop waits for the whole drain.
func (s *Sidecar) Close() error {
	_, err := s.StopWithin(CloseGrace)
	if err != nil {
		s.kill()
	}
	return err
}

// kill sends SIGKILL and waits for the exit.
func (s *Sidecar) kill() {
	s.mu.Lock()
	select {
	case <-s.done:
	default:
		s.killed = true
		_ = s.cmd.Process.Kill()
	}
	s.mu.Unlock()
	<-s.done
}

// finish returns the Exit of an egressd whose done is closed.
func (s *Sidecar) finish() Exit {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.exit == nil {
		exit := exitOf(s.cmd.ProcessState, s.killed, s.stderr.tail())
		s.exit = &exit
	}
	return *s.exit
}

func withoutEgressdVariables(environ []string) []string {
	kept := environ[:0:0]
	for _, pair := range environ {
		if !strings.HasPrefix(pair, "EGRESSD_") {
			kept = append(kept, pair)
		}
	}
	return kept
}

// firstLine takes egressd's stdout: its first line goes to line (nil if it is too long), the
// rest is dropped. It never fails a write, so egressd never blocks on a full pipe.
type firstLine struct {
	buf  []byte
	sent bool
	line chan []byte
}

func (f *firstLine) Write(p []byte) (int, error) {
	if f.sent {
		return len(p), nil
	}
	f.buf = append(f.buf, p...)
	if i := bytes.IndexByte(f.buf, '\n'); i >= 0 {
		f.line <- f.buf[:i]
		f.sent, f.buf = true, nil
	} else if len(f.buf) > readyLineLimit {
		f.line <- nil
		f.sent, f.buf = true, nil
	}
	return len(p), nil
}

// lineWriter takes egressd's stderr: each line goes on to sink, and the last StderrTail
// non-empty lines are kept. A failing sink does not fail the write.
type lineWriter struct {
	sink    io.Writer
	mu      sync.Mutex
	partial []byte
	lines   []string
}

func (w *lineWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.partial = append(w.partial, p...)
	for {
		i := bytes.IndexByte(w.partial, '\n')
		if i < 0 {
			if len(w.partial) > stderrLineLimit {
				w.line(w.partial)
				w.partial = nil
			}
			return len(p), nil
		}
		w.line(w.partial[:i])
		w.partial = w.partial[i+1:]
	}
}

func (w *lineWriter) line(line []byte) {
	_, _ = w.sink.Write(append(append([]byte(nil), line...), '\n'))
	text := strings.TrimRight(string(line), "\r")
	if strings.TrimSpace(text) == "" {
		return
	}
	if len(w.lines) == StderrTail {
		w.lines = w.lines[1:]
	}
	w.lines = append(w.lines, text)
}

func (w *lineWriter) flush() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.partial) > 0 {
		w.line(w.partial)
		w.partial = nil
	}
}

func (w *lineWriter) tail() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]string(nil), w.lines...)
}
