// Package app is cloister as an Ergo application: the Manager as the
// application's child, and the start gate — Start returns only when the
// cluster has reached consensus, so every application listed after
// cloister on the node starts in a formed cluster (the original's start
// phase).
package app

import "github.com/cloister-go/cloister/actors"

// Options configure cloister: the one options struct, defined (with every
// field's default) in package actors and re-exported as cloister.Options;
// start from cloister.DefaultOptions (or actors.DefaultOptions).
type Options = actors.Options
