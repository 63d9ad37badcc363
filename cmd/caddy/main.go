// Command caddy is a full Caddy build with the standard modules and clawgate.
package main

import (
	caddycmd "github.com/caddyserver/caddy/v2/cmd"

	_ "github.com/caddyserver/caddy/v2/modules/standard"
	_ "github.com/clawgate/clawgate/caddymodule"
)

func main() {
	caddycmd.Main()
}
