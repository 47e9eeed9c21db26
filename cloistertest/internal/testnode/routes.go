package main

import (
	"fmt"
	"net"
	"strconv"
	"strings"

	"github.com/ergo-services/ergo/etf"
	"github.com/ergo-services/ergo/gen"
	"github.com/ergo-services/ergo/node"
)

// route is a static route: reach Node at Addr (host:port) instead of
// asking EPMD.
type route struct {
	Node, Addr string
}

// parseRoute parses "name@host=host:port".
func parseRoute(s string) (route, error) {
	nodeName, addr, ok := strings.Cut(s, "=")
	if !ok || !strings.Contains(nodeName, "@") {
		return route{}, fmt.Errorf("testnode: bad route %q: want name@host=host:port", s)
	}
	if _, _, err := net.SplitHostPort(addr); err != nil {
		return route{}, fmt.Errorf("testnode: bad route %q: %v", s, err)
	}
	return route{Node: nodeName, Addr: addr}, nil
}

// newRoutesApp is an Ergo application that installs static routes when it
// starts. List it before cloister so the routes exist before the Monitor
// dials: Ergo resolves a static route before asking EPMD, for Connect and
// for every send that connects.
func newRoutesApp(routes []route) gen.ApplicationBehavior {
	return &routesApp{routes: routes}
}

// routesApp is the application newRoutesApp returns.
type routesApp struct {
	gen.Application
	routes []route
}

// Load implements gen.ApplicationBehavior.
func (a *routesApp) Load(args ...etf.Term) (gen.ApplicationSpec, error) {
	return gen.ApplicationSpec{Name: "cloistertest_routes", Description: "static routes for fault injection", Version: "v1"}, nil
}

// Start installs the routes; a bad one fails the node's start.
func (a *routesApp) Start(p gen.Process, args ...etf.Term) {
	n, ok := p.Env(node.EnvKeyNode).(node.Node)
	if !ok {
		panic("testnode: routes: no node in the environment")
	}
	for _, r := range a.routes {
		host, port, _ := net.SplitHostPort(r.Addr)
		pn, err := strconv.Atoi(port)
		if err != nil {
			panic(fmt.Sprintf("testnode: route %s: %v", r.Node, err))
		}
		if err := n.AddStaticRoute(r.Node, host, uint16(pn), node.RouteOptions{}); err != nil {
			panic(fmt.Sprintf("testnode: route %s: %v", r.Node, err))
		}
	}
}
