package launcher

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// patience bounds anything a test waits on; reached only when something is broken.
const patience = 20 * time.Second

// binary is the egressd that .ci/run built and exported as EGRESSD_BIN.
func binary(t *testing.T) string {
	t.Helper()
	bin := os.Getenv("EGRESSD_BIN")
	if bin == "" {
		t.Skip("EGRESSD_BIN is not set: build egressd (cargo build --bin egressd) and set it to the binary's path; .ci/run does")
	}
	return bin
}

// policyFor allows origin.test (a static record: 127.0.0.1) on port and refuses the rest; the
// resolver points at a closed loopback port, so no name is ever asked beyond this machine.
func policyFor(t *testing.T, port int) string {
	t.Helper()
	text := fmt.Sprintf(`version = 1
[defaults]
action = "deny"

[[allow]]
host = "origin.test"
ports = [%d]

[[danger_carve_out]]
cidr = "127.0.0.1/32"
ports = [%d]

[headers]
"X-Egressd-Sandbox" = "{sandbox_id}"

[dns.static]
"origin.test" = ["127.0.0.1"]

[dns]
upstreams = ["127.0.0.1:9"]
`, port, port)
	path := filepath.Join(t.TempDir(), "policy.toml")
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// origin is a loopback HTTP origin that records the sandbox header it is sent.
func origin(t *testing.T) (*httptest.Server, int, chan string) {
	t.Helper()
	seen := make(chan string, 16)
	server := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		seen <- r.Header.Get("X-Egressd-Sandbox")
		_, _ = io.WriteString(w, "hello from the origin\n")
	}))
	t.Cleanup(server.Close)
	return server, server.Listener.Addr().(*net.TCPAddr).Port, seen
}

// echo is a loopback TCP echo server, for tunnels.
func echo(t *testing.T) int {
	t.Helper()
	listener, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { listener.Close() })
	go func() {
		for {
			conn, err := listener.Accept()
			if err != nil {
				return
			}
			go func() { _, _ = io.Copy(conn, conn); conn.Close() }()
		}
	}()
	return listener.Addr().(*net.TCPAddr).Port
}

// openTunnel opens a CONNECT tunnel to origin.test:port through proxy and checks it echoes.
func openTunnel(t *testing.T, proxy string, port int) net.Conn {
	t.Helper()
	conn, err := net.Dial("tcp", proxy)
	if err != nil {
		t.Fatal(err)
	}
	_ = conn.SetDeadline(time.Now().Add(patience))
	fmt.Fprintf(conn, "CONNECT origin.test:%d HTTP/1.1\r\nHost: origin.test:%d\r\n\r\n", port, port)
	response, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil || response.StatusCode != 200 {
		t.Fatalf("CONNECT: %v %v", response, err)
	}
	roundTrip(t, conn, "one..")
	return conn
}

func roundTrip(t *testing.T, conn net.Conn, text string) {
	t.Helper()
	if _, err := io.WriteString(conn, text); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, len(text))
	if _, err := io.ReadFull(conn, got); err != nil || string(got) != text {
		t.Fatalf("echo: %q %v", got, err)
	}
}

// lines sends each line egressd writes on stderr to a channel.
type lines chan string

func (l lines) Write(p []byte) (int, error) {
	select {
	case l <- string(p):
	default:
	}
	return len(p), nil
}

func TestStartHandsOutTheReadinessLineTyped(t *testing.T) {
	bin := binary(t)
	_, port, seen := origin(t)
	policy := policyFor(t, port)
	sidecar, err := Start(bin, Options{Policy: policy, SandboxID: "kit-go", Stderr: io.Discard})
	if err != nil {
		t.Fatal(err)
	}
	defer sidecar.Close()
	ready := sidecar.Ready()
	if ready.Pid != sidecar.Pid() || ready.SandboxID != "kit-go" || !ready.Proxy.Addr().IsLoopback() {
		t.Fatalf("%v", ready)
	}
	if ready.DNS == nil || !ready.DNS.Addr().IsLoopback() || ready.ProxyCredential != "generated" ||
		ready.Mode != "enforce" || ready.Policy.Origin != policy {
		t.Fatalf("%v", ready)
	}
	for _, name := range []string{"HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"} {
		if ready.Env[name] != ready.ProxyURL {
			t.Errorf("%s is not the proxy URL", name)
		}
	}
	if shown := fmt.Sprintf("%v %+v %#v", ready, ready, ready); strings.Contains(shown, ready.ProxyURL) {
		t.Errorf("the secret is printed: %s", shown)
	}

	// A client given the env block's proxy URL (credential included) gets through; without the
	// credential it gets 407.
	target := fmt.Sprintf("http://origin.test:%d/", port)
	proxyURL, err := url.Parse(ready.Env["HTTP_PROXY"])
	if err != nil {
		t.Fatal(err)
	}
	client := &http.Client{Transport: &http.Transport{Proxy: http.ProxyURL(proxyURL)}, Timeout: patience}
	response, err := client.Get(target)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(response.Body)
	response.Body.Close()
	if response.StatusCode != 200 || string(body) != "hello from the origin\n" || <-seen != "kit-go" {
		t.Fatalf("%d %q", response.StatusCode, body)
	}
	proxyURL.User = nil
	client = &http.Client{Transport: &http.Transport{Proxy: http.ProxyURL(proxyURL)}, Timeout: patience}
	response, err = client.Get(target)
	if err != nil {
		t.Fatal(err)
	}
	response.Body.Close()
	if response.StatusCode != 407 {
		t.Fatalf("without the credential: %d", response.StatusCode)
	}

	exit, err := sidecar.Stop()
	if err != nil || !exit.Clean() {
		t.Fatalf("%v %v", exit, err)
	}
}

func TestAnEarlyExitFailsClosedWithTheDocumentedCodeAndTheReason(t *testing.T) {
	bin := binary(t)
	_, err := Start(bin, Options{Policy: "../../policy/testdata/invalid/carve-out-broad.toml", Stderr: io.Discard})
	var early *EarlyExitError
	if !errors.As(err, &early) || early.Exit.Code != CodeBadInput {
		t.Fatalf("%v", err)
	}
	if !strings.Contains(early.Exit.LastStderrLine(), "carve-out-broad.toml:4:8") ||
		!strings.Contains(err.Error(), "exit code 2 (bad input)") {
		t.Fatalf("%v", err)
	}

	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	_, err = Start(bin, Options{ProxyListen: taken.Addr().String(), Stderr: io.Discard})
	if !errors.As(err, &early) || early.Exit.Code != CodeStartFailed ||
		!strings.Contains(err.Error(), "cannot listen on "+taken.Addr().String()) {
		t.Fatalf("%v", err)
	}

	if _, err = Start("/nonexistent/egressd", Options{}); err == nil || errors.As(err, &early) {
		t.Fatalf("%v", err)
	}
}

func TestStopDrainsAnOpenTunnelAndASecondStopIsHarmless(t *testing.T) {
	bin := binary(t)
	port := echo(t)
	stderr := make(lines, 256)
	sidecar, err := Start(bin, Options{
		Policy: policyFor(t, port), NoProxyCredential: true, DrainTimeout: patience, Stderr: stderr,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer sidecar.Close()
	proxy := sidecar.Ready().Proxy.String()
	tunnel := openTunnel(t, proxy, port)

	stopped := make(chan Exit, 1)
	go func() {
		exit, err := sidecar.Stop()
		if err != nil {
			t.Error(err)
		}
		stopped <- exit
	}()
	timeout := time.After(patience)
	for draining := false; !draining; {
		select {
		case line := <-stderr:
			draining = strings.Contains(line, "draining")
		case <-timeout:
			t.Fatal("egressd never said it drains")
		}
	}
	if conn, err := net.Dial("tcp", proxy); err == nil {
		conn.Close()
		t.Fatal("a new connection while draining")
	}
	roundTrip(t, tunnel, "two..")
	tunnel.Close()
	exit := <-stopped
	if !exit.Clean() {
		t.Fatalf("%v", exit)
	}
	again, err := sidecar.Stop()
	if err != nil || again.String() != exit.String() || !again.Clean() {
		t.Fatalf("second stop: %v %v", again, err)
	}
	if err := sidecar.Terminate(); err != nil {
		t.Fatal(err)
	}
}

func TestStopKillsEgressdThatOutlastsItsDeadline(t *testing.T) {
	bin := binary(t)
	port := echo(t)
	sidecar, err := Start(bin, Options{
		Policy: policyFor(t, port), NoProxyCredential: true, DrainTimeout: 10 * time.Minute, Stderr: io.Discard,
	})
	if err != nil {
		t.Fatal(err)
	}
	// The tunnel stays open across the stop: egressd would drain for ten minutes.
	tunnel := openTunnel(t, sidecar.Ready().Proxy.String(), port)
	defer tunnel.Close()
	exit, err := sidecar.StopWithin(200 * time.Millisecond)
	if err != nil || !exit.Killed || exit.Clean() || exit.Signal == nil {
		t.Fatalf("%v %v", exit, err)
	}
	if again, _ := sidecar.Stop(); again.String() != exit.String() {
		t.Fatalf("second stop: %v", again)
	}
}

func TestClosingStopsEgressdAndSoDoesLettingGoOfStdin(t *testing.T) {
	bin := binary(t)
	sidecar, err := Start(bin, Options{Stderr: io.Discard})
	if err != nil {
		t.Fatal(err)
	}
	proxy := sidecar.Ready().Proxy.String()
	if err := sidecar.Close(); err != nil {
		t.Fatal(err)
	}
	if _, running := sidecar.Exit(); !running {
		t.Fatal("no exit after Close")
	}
	if conn, err := net.Dial("tcp", proxy); err == nil {
		conn.Close()
		t.Fatal("egressd still listens after Close")
	}

	sidecar, err = Start(bin, Options{Stderr: io.Discard})
	if err != nil {
		t.Fatal(err)
	}
	if err := sidecar.CloseStdin(); err != nil {
		t.Fatal(err)
	}
	exit := sidecar.WaitWithin(patience)
	if !exit.Clean() || !strings.Contains(strings.Join(exit.Stderr, "\n"), "stdin closed") {
		t.Fatalf("%v %q", exit, exit.Stderr)
	}
}

func TestAJobWithTheEnvBlockReachesTheOriginThroughCurl(t *testing.T) {
	bin := binary(t)
	if _, err := exec.LookPath("curl"); err != nil {
		t.Skip("needs curl (.ci/run installs it)")
	}
	_, port, seen := origin(t)
	sidecar, err := Start(bin, Options{Policy: policyFor(t, port), SandboxID: "kit-go-curl", Stderr: io.Discard})
	if err != nil {
		t.Fatal(err)
	}
	defer sidecar.Close()
	curl := func(target string) string {
		cmd := exec.Command("curl", "-sS", "--max-time", "20", "-w", "%{http_code}", target)
		cmd.Env = append(withoutProxyVariables(os.Environ()), sidecar.Ready().Environ()...)
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("curl %s: %v", target, err)
		}
		return string(out)
	}
	if got := curl(fmt.Sprintf("http://origin.test:%d/", port)); got != "hello from the origin\n200" {
		t.Fatalf("%q", got)
	}
	if sandbox := <-seen; sandbox != "kit-go-curl" {
		t.Fatalf("the origin saw sandbox %q", sandbox)
	}
	if got := curl(fmt.Sprintf("http://not-allowed.test:%d/", port)); !strings.HasSuffix(got, "403") {
		t.Fatalf("%q", got)
	}
	if exit, err := sidecar.Stop(); err != nil || !exit.Clean() {
		t.Fatalf("%v %v", exit, err)
	}
}

func withoutProxyVariables(environ []string) []string {
	var kept []string
	for _, pair := range environ {
		name := strings.ToUpper(strings.SplitN(pair, "=", 2)[0])
		if !strings.HasSuffix(name, "_PROXY") {
			kept = append(kept, pair)
		}
	}
	return kept
}
