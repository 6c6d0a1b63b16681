package launcher

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"sort"
)

// Ready is egressd's readiness line (docs/launcher.md, "Readiness"). Fields a newer egressd adds
// are ignored.
//
// It carries the proxy credential's secret (in ProxyURL and Env): keep it away from other users
// and sandboxes. Its String method leaves the secret out, so %v and %+v do too.
type Ready struct {
	Event   string `json:"event"`
	Version string `json:"version"`
	Pid     int    `json:"pid"`
	// SandboxID is as given.
	SandboxID string `json:"sandbox_id"`
	// Proxy is the proxy's bound TCP address.
	Proxy netip.AddrPort `json:"proxy"`
	// ProxyURL is the proxy with the credential as userinfo: http://egressd:SECRET@127.0.0.1:PORT
	// (no userinfo with --no-proxy-credential).
	ProxyURL string `json:"proxy_url"`
	// ProxyCredential says where the secret came from: "generated", "file" or "none".
	ProxyCredential string `json:"proxy_credential"`
	// ProxyUnix is the proxy's Unix socket path, or "".
	ProxyUnix string `json:"proxy_unix"`
	// DNS is the DNS stub's address (UDP and TCP), or nil with --no-dns.
	DNS *netip.AddrPort `json:"dns"`
	// DNSUnix is the DNS stub's Unix socket path, or "".
	DNSUnix string `json:"dns_unix"`
	// Policy says which policy is in force.
	Policy PolicyInfo `json:"policy"`
	// Mode is "enforce" or "report".
	Mode string `json:"mode"`
	// ModeDetail says what report mode means, or "".
	ModeDetail string `json:"mode_detail"`
	// Metrics is the metrics endpoint's address, or nil.
	Metrics *netip.AddrPort `json:"metrics"`
	// InspectCA is the CA certificate egressd wrote for TLS inspection, or "".
	InspectCA string `json:"inspect_ca"`
	// InspectCABundle is the system's roots plus the CA, or "".
	InspectCABundle string `json:"inspect_ca_bundle"`
	// Env holds the variables to export into the sandbox: HTTP_PROXY, HTTPS_PROXY, ALL_PROXY and
	// their lower-case twins, NO_PROXY, and with a CA the bundle variables.
	Env map[string]string `json:"env"`
}

// PolicyInfo names the policy in force.
type PolicyInfo struct {
	// Origin is the policy file's path, or "<built-in>".
	Origin string `json:"origin"`
	// SHA256 is the SHA-256 of its text, in hex.
	SHA256 string `json:"sha256"`
}

// ParseReady parses a readiness line (or the --ready-file's text).
func ParseReady(line []byte) (Ready, error) {
	var ready Ready
	if err := json.Unmarshal(line, &ready); err != nil {
		return Ready{}, &BadReadinessError{Reason: reasonOf(err)}
	}
	if ready.Event != "ready" {
		return Ready{}, &BadReadinessError{Reason: `its event is not "ready"`}
	}
	if !ready.Proxy.IsValid() || ready.ProxyURL == "" {
		return Ready{}, &BadReadinessError{Reason: "it has no proxy address"}
	}
	return ready, nil
}

// reasonOf describes a JSON error without quoting the input (which carries the secret).
func reasonOf(err error) string {
	var syntax *json.SyntaxError
	var typ *json.UnmarshalTypeError
	switch {
	case errors.As(err, &syntax):
		return fmt.Sprintf("not JSON (at byte %d)", syntax.Offset)
	case errors.As(err, &typ):
		return fmt.Sprintf("field %q is not a %s", typ.Field, typ.Type)
	default:
		return "a field cannot be read"
	}
}

// Environ returns the env block as sorted KEY=VALUE strings, for exec.Cmd's Env.
func (r Ready) Environ() []string {
	pairs := make([]string, 0, len(r.Env))
	for name, value := range r.Env {
		pairs = append(pairs, name+"="+value)
	}
	sort.Strings(pairs)
	return pairs
}

// String describes the line without the secret: neither ProxyURL nor the Env values.
func (r Ready) String() string {
	names := make([]string, 0, len(r.Env))
	for name := range r.Env {
		names = append(names, name)
	}
	sort.Strings(names)
	dns := "none"
	if r.DNS != nil {
		dns = r.DNS.String()
	}
	return fmt.Sprintf("egressd %s ready: pid %d, proxy %s, dns %s, policy %s (%s), credential %s, env %v",
		r.Version, r.Pid, r.Proxy, dns, r.Policy.Origin, r.Mode, r.ProxyCredential, names)
}

// GoString is String, for %#v.
func (r Ready) GoString() string { return r.String() }
