package launcher_test

import (
	"fmt"
	"log"
	"os"
	"os/exec"
	"time"

	launcher "example.invalid/egressd/launcher/go"
)

// Start egressd with a policy, run a job with the env block, and stop egressd after it; a job
// never starts without a ready proxy, and an egressd that died during the job fails the run.
// (Compiled, not run: cmd/curl-example runs the same against a loopback origin, in CI.)
func Example() {
	sidecar, err := launcher.Start("/usr/local/bin/egressd", launcher.Options{
		Policy:           "/etc/egressd/ci.toml",
		SandboxID:        "job-42",
		AuditLog:         "/var/log/egressd/job-42.jsonl",
		DrainTimeout:     5 * time.Second,
		ReadinessTimeout: 10 * time.Second,
	})
	if err != nil {
		log.Fatal(err) // egressd is not running, and the job must not start
	}
	defer sidecar.Close() // never outlives this function

	job := exec.Command("./job")
	job.Env = append(os.Environ(), sidecar.Ready().Environ()...)
	if err := job.Start(); err != nil {
		log.Fatal(err)
	}
	finished := make(chan error, 1)
	go func() { finished <- job.Wait() }()
	var jobErr error
	select {
	case jobErr = <-finished:
	case <-sidecar.Done():
		_ = job.Process.Kill() // the proxy is gone: fail the run
		<-finished
		exit, _ := sidecar.Exit()
		log.Fatalf("egressd exited during the job: %s: %s", exit, exit.LastStderrLine())
	}

	exit, err := sidecar.Stop() // SIGTERM, drain, SIGKILL at the deadline
	if err != nil || !exit.Clean() {
		log.Printf("egressd: %s %v", exit, err)
	}
	fmt.Println("job:", jobErr)
}
