package discovery_test

import (
	"fmt"
	"net/netip"

	"github.com/cloister-go/cloister/internal/discovery"
)

func ExamplePeers() {
	addrs := []netip.Addr{
		netip.MustParseAddr("172.18.0.12"),
		netip.MustParseAddr("172.18.0.3"),
		netip.MustParseAddr("172.18.0.12"),
	}
	fmt.Println(discovery.Peers("shop", addrs))
	// Output: [shop@172.18.0.3 shop@172.18.0.12]
}
