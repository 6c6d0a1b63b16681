// Package launcher starts egressd from a Go launcher, knows when it is ready, hands its
// environment block to a job, and stops it: the launcher contract of egressd's docs/launcher.md
// in one package, so that no launcher gets it wrong. It uses the standard library only.
//
//   - Start runs `egressd run` with typed Options and returns a Sidecar only once the readiness
//     line is out, parsed into a Ready (proxy URL, DNS address, CA, the env block).
//   - It fails closed: an exit before readiness is an *EarlyExitError with the exit code (2 bad
//     input, 3 start-up failed) and egressd's last stderr line; no line within the readiness
//     timeout is a *ReadinessTimeoutError, and egressd is killed. No error leaves egressd running.
//   - The Sidecar holds egressd's stdin (--exit-on-stdin-eof): if the launcher dies, egressd
//     follows. Stop sends SIGTERM, waits for the drain (--drain-timeout) and a grace, then kills;
//     a second Stop returns the same Exit. Close (for defer) stops with a short grace.
//   - Done is closed when egressd exits: a launcher selects on it while the job runs, since an
//     egressd that exited 4 left the job without its proxy.
//
// It does not confine the job: the host firewall rules (egressd pf, nft, sbpl) keep a job that
// ignores the environment off the network.
package launcher
