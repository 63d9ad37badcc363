package edge

// DefaultUserHeader is the header the guard sends the user in when its
// user_header names none, and so the header a gateway's
// gateway.auth.trustedProxy.userHeader has to name.
const DefaultUserHeader = "x-forwarded-user"

// DefaultGatewayPort is OpenClaw's default gateway.port: where a gateway
// whose config names no port listens, and so where clawgate expects a
// gateway whose block names no upstream.
const DefaultGatewayPort = 18789

// ForwardedHeaders returns the forwarding headers the guard sets on every
// request it admits, besides the user header and x-openclaw-scopes
// (SetForwardHeaders): a gateway that requires any other header
// (trustedProxy.requiredHeaders) refuses every request that comes through
// clawgate.
func ForwardedHeaders() []string {
	return []string{"x-forwarded-proto", "x-forwarded-host", "x-forwarded-for"}
}

// GatewayRequiredHeaders returns the headers a gateway behind clawgate
// should require (trustedProxy.requiredHeaders), so that a request that did
// not come through clawgate lacks them: a subset of ForwardedHeaders.
// X-Forwarded-For is sent too, but OpenClaw reads it to attribute a request,
// not as proof of where it came from.
func GatewayRequiredHeaders() []string {
	return []string{"x-forwarded-proto", "x-forwarded-host"}
}
