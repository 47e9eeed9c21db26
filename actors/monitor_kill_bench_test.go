package actors

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/cloister-go/cloister/internal/core"
	"github.com/cloister-go/cloister/listener"
)

// BenchmarkKillRemoval is a survivor's own work for a killed member of a
// cluster of 25: the link drop, the re-dial proving it gone, the removal,
// the ring rebuild and the snapshots told to the listener.
func BenchmarkKillRemoval(b *testing.B) {
	const n = 25
	o := testOptions()
	o.FlapGrace = time.Second
	var peers []string
	for i := 1; i < n; i++ {
		peers = append(peers, fmt.Sprintf("node%02d@127.0.0.1", i))
	}
	all := append([]string{"node00@127.0.0.1"}, peers...)
	o.Sentry = all
	o.Consensus = n - 1
	heard := make(chan struct{}, 16)
	o.Listener = listener.Func(func(from, to listener.State, s listener.Snapshot) { heard <- struct{}{} })
	c, err := newShared("cloister", []string{"cloister"}, nil)
	if err != nil {
		b.Fatal(err)
	}
	net := newFakeNet()
	now := time.Unix(1_700_000_000, 0)
	d := newDriver(context.Background(), o, c, all[0], net, func() time.Time { return now }, func(interface{}) {}, func(string, ...interface{}) {})
	defer d.stop()
	d.start()
	h := core.MembersHash(all)
	join := func(p string) {
		net.connected[p] = true
		d.step(core.NodeUp{Now: now, Node: p})
		d.step(core.ProbeReply{Now: now, Node: p, OTPApp: "cloister", Members: all, Hash: h, HasHash: true})
	}
	for _, p := range peers {
		join(p)
	}
	for len(heard) > 0 {
		<-heard
	}
	victim := peers[n/2]
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		now = now.Add(time.Second)
		net.connected[victim] = false
		d.step(core.NodeDown{Now: now, Node: victim})
		d.dialDone(dialDoneMsg{node: victim, err: errors.New("refused"), gone: true})
		<-heard
		b.StopTimer()
		<-heard
		join(victim)
		<-heard
		<-heard
		b.StartTimer()
	}
}
