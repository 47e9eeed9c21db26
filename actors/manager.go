package actors

import (
	"github.com/cloister-go/cloister/internal/wire/ergonode"
	"github.com/ergo-services/ergo/etf"
	"github.com/ergo-services/ergo/gen"
	"log/slog"
)

// Child is an additional module: an extra child of the Manager, started
// after the Monitor and the Node actor (the original's additional_modules).
type Child struct {
	// Name registers the child; empty leaves it unnamed.
	Name    string
	Child   gen.ProcessBehavior
	Options gen.ProcessOptions
	Args    []etf.Term
}

// manager is Cloister.Manager: a rest_for_one supervisor over the Monitor,
// the (empty) dynamic supervisor Cloister, the Node actor and the
// additional modules, in that order. If the Monitor restarts, everything
// after it restarts too, as in the original. At most 10 restarts in 5 s;
// beyond that the Manager stops and so does cloister on this node, which
// the cluster then says (Cluster.Stopped, Cluster.Err in the facade, empty rings, state
// stopped). Its loop is our own (manager_sup.go): it ignores exit signals
// from other processes and answers OTP supervisor calls.
type manager struct {
	gen.Supervisor
	cluster    *shared
	monitor    *monitor
	nodeActor  gen.ServerBehavior
	additional []Child
}

// NewManager validates o and builds the Manager, Cloister.Manager: a
// rest_for_one supervisor over the Monitor, the (empty) dynamic supervisor
// Cloister, the Node actor and the additional modules, with the cluster
// state it owns (rings, published snapshot, registered functions). The
// facade (package cloister) builds it for you: cloister.New, then
// Cluster.ChildSpec to run it in your own supervision tree.
func NewManager(o Options) (gen.SupervisorBehavior, error) {
	if err := o.Validate(); err != nil {
		return nil, err
	}
	c, err := newShared(o.OTPApp, o.rings(), o.Engine)
	if err != nil {
		return nil, err
	}
	c.mem.off = o.KeepFreedMemory
	return newManager(c, o), nil
}

// newManager builds the Manager for cluster c; o must be validated.
func newManager(c *shared, o Options) *manager {
	return &manager{cluster: c, monitor: newMonitor(c, o), nodeActor: newClusterNode(c, o.ObserveFanout), additional: o.AdditionalModules}
}

// ProcessLoop runs the Manager's own supervisor loop (see manager_sup.go)
// on the spec Init declared.
func (m *manager) ProcessLoop(ps gen.ProcessState, started chan<- bool) string {
	spec, ok := ps.State.(*gen.SupervisorSpec)
	if !ok {
		started <- true
		return "ProcessLoop: not a SupervisorSpec"
	}
	s := newSupervisor(ps, spec, m.monitor.opts.logf(slog.LevelWarn))
	s.connected = m.cluster.ConnectedTo
	s.onStop = m.cluster.stopped
	s.own = m.cluster.setOwn
	m.cluster.running()
	return s.loop(ps, started)
}

// Init declares the children.
func (m *manager) Init(args ...etf.Term) (gen.SupervisorSpec, error) {
	name := m.monitor.opts.MonitorName
	children := []gen.SupervisorChildSpec{
		{Name: name, Child: m.monitor, Options: gen.ProcessOptions{MailboxSize: ergonode.NetworkMailbox}},
		{Name: dynamicSupName, Child: &dynamicSup{}},
		{Name: NodeName, Child: m.nodeActor, Options: gen.ProcessOptions{MailboxSize: ergonode.NetworkMailbox}},
	}
	for _, a := range m.additional {
		children = append(children, gen.SupervisorChildSpec{Name: a.Name, Child: a.Child, Options: a.Options, Args: a.Args})
	}
	return gen.SupervisorSpec{
		Children: children,
		Strategy: gen.SupervisorStrategy{
			Type:      gen.SupervisorStrategyRestForOne,
			Intensity: 10,
			Period:    5,
			Restart:   gen.SupervisorStrategyRestartPermanent,
		},
	}, nil
}

// dynamicSup stands for the original's unused DynamicSupervisor `Cloister`,
// kept so the registered names match an Elixir node's.
type dynamicSup struct{ gen.Supervisor }

func (d *dynamicSup) Init(args ...etf.Term) (gen.SupervisorSpec, error) {
	return gen.SupervisorSpec{Strategy: gen.SupervisorStrategy{
		Type: gen.SupervisorStrategyOneForOne, Intensity: 10, Period: 5,
		Restart: gen.SupervisorStrategyRestartTransient,
	}}, nil
}
