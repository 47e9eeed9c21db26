package statem_test

import (
	"errors"
	"fmt"
	"time"

	"github.com/cloister-go/cloister/internal/statem"
	"github.com/cloister-go/cloister/internal/wire/ergonode"
	"github.com/ergo-services/ergo/etf"
	"github.com/ergo-services/ergo/gen"
)

// Door is a two-state machine. Go code opens and closes it with
// process.Direct; any process (Erlang's gen_server:call included) may ask
// for its state with a call, in either state; an open door closes itself
// after a minute.
type Door struct{ statem.StateMachine }

var _ statem.Behavior = (*Door)(nil)

// Table declares the only two transitions.
func (d *Door) Table() statem.Table {
	return statem.Table{"closed": {"open"}, "open": {"closed"}}
}

// InitStateMachine starts closed. It must not Call other processes.
func (d *Door) InitStateMachine(p *statem.Process, args ...etf.Term) (statem.State, []interface{}, error) {
	return "closed", nil, nil
}

// HandleEvent is the whole behaviour.
func (d *Door) HandleEvent(p *statem.Process, state statem.State, ev interface{}) statem.Result {
	switch ev := ev.(type) {
	case statem.Enter:
		if state == "open" {
			return statem.Result{Actions: []interface{}{
				statem.SetStateTimeout{After: time.Minute, Msg: "auto-close"},
			}}
		}
	case statem.StateTimeout:
		return statem.Result{Next: "closed"}
	case statem.Call:
		return statem.Result{Actions: []interface{}{statem.Reply{From: ev.From, Msg: string(state)}}}
	case statem.Direct:
		var next statem.State
		switch ev.Msg {
		case "open":
			next = "open"
		case "close":
			next = "closed"
		default:
			err := errors.New("door: unknown request")
			return statem.Result{Actions: []interface{}{statem.DirectReply{Ref: ev.Ref, Err: err}}}
		}
		// Opening an open door is no change: no Enter, the timer keeps.
		return statem.Result{Next: next, Actions: []interface{}{
			statem.DirectReply{Ref: ev.Ref, Msg: string(next)},
		}}
	}
	return statem.Result{}
}

// This example needs an epmd on 127.0.0.1:4369, so it is compiled but not
// run; TestExampleDoor runs the same Door on the test node.
func Example() {
	n, err := ergonode.Start("door@127.0.0.1", ergonode.Options{})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer n.Stop()

	door, err := n.Spawn("door", gen.ProcessOptions{}, &Door{})
	if err != nil {
		fmt.Println(err)
		return
	}
	v, err := door.Direct("open")
	fmt.Println(v, err)
	s, err := statem.StateOf(door)
	fmt.Println(s, err)
}
