package actors

import "github.com/cloister-go/cloister/internal/errs"

func nodeErr(node string, k errs.ErrorKind, err error) *errs.NodeError {
	return &errs.NodeError{Node: node, Kind: k, Err: err}
}
