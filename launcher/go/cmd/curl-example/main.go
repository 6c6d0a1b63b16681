// Command curl-example is a launcher in miniature: it starts egressd with the launcher package,
// runs a job (curl) with the readiness line's env block, and stops egressd. The job asks a
// loopback origin the example serves itself, by a name the policy allows (origin.test, a static
// record), then a name it does not: nothing leaves loopback.
//
//	cargo build --bin egressd
//	cd launcher/go && go run ./cmd/curl-example ../../target/debug/egressd
//
// The path can also come from EGRESSD_BIN. Needs curl on the PATH.
package main

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	launcher "example.invalid/egressd/launcher/go"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "curl-example:", err)
		os.Exit(1)
	}
}

func run() error {
	binary := os.Getenv("EGRESSD_BIN")
	if len(os.Args) > 1 {
		binary = os.Args[1]
	}
	if binary == "" {
		return fmt.Errorf("usage: curl-example EGRESSD_BINARY (or set EGRESSD_BIN)")
	}

	listener, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	go http.Serve(listener, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, "hello from the origin\n")
	}))
	port := listener.Addr().(*net.TCPAddr).Port

	dir, err := os.MkdirTemp("", "egressd-launcher-example")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	policy := filepath.Join(dir, "policy.toml")
	if err := os.WriteFile(policy, []byte(policyFor(port)), 0o600); err != nil {
		return err
	}

	sidecar, err := launcher.Start(binary, launcher.Options{
		Policy:       policy,
		SandboxID:    "example",
		DrainTimeout: 2 * time.Second,
		Stderr:       io.Discard,
	})
	if err != nil {
		return err // egressd is not running: the job must not start
	}
	defer sidecar.Close()
	fmt.Println(sidecar.Ready())

	allowed, err := curl(sidecar.Ready(), fmt.Sprintf("http://origin.test:%d/", port))
	if err != nil {
		return err
	}
	fmt.Printf("allowed: %s", allowed)
	refused, err := curl(sidecar.Ready(), fmt.Sprintf("http://example.org:%d/", port), "-o", os.DevNull)
	if err != nil {
		return err
	}
	fmt.Printf("refused: %s", refused)

	exit, err := sidecar.Stop()
	if err != nil {
		return err
	}
	fmt.Println("egressd stopped:", exit)
	switch {
	case allowed != "hello from the origin\n200\n":
		return fmt.Errorf("the allowed request failed")
	case refused != "403\n":
		return fmt.Errorf("the refused request was not refused")
	case !exit.Clean():
		return fmt.Errorf("egressd did not stop cleanly: %s", exit)
	}
	return nil
}

// curl runs curl with the env block (and no other proxy variable) and returns what it printed:
// the body (unless args send it elsewhere), then the status.
func curl(ready launcher.Ready, target string, args ...string) (string, error) {
	args = append([]string{"-sS", "--max-time", "20", "-w", "%{http_code}\n"}, args...)
	cmd := exec.Command("curl", append(args, target)...)
	for _, pair := range os.Environ() {
		if !strings.HasSuffix(strings.ToUpper(strings.SplitN(pair, "=", 2)[0]), "_PROXY") {
			cmd.Env = append(cmd.Env, pair)
		}
	}
	cmd.Env = append(cmd.Env, ready.Environ()...)
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	return string(out), err
}

// policyFor allows origin.test (a static record: 127.0.0.1) on port and refuses the rest; the
// resolver points at a closed loopback port, so no name is ever asked beyond this machine.
func policyFor(port int) string {
	return fmt.Sprintf(`version = 1
[defaults]
action = "deny"

[[allow]]
host = "origin.test"
ports = [%d]

[[danger_carve_out]]
cidr = "127.0.0.1/32"
ports = [%d]

[dns.static]
"origin.test" = ["127.0.0.1"]

[dns]
upstreams = ["127.0.0.1:9"]
`, port, port)
}
