// Package logf turns a *slog.Logger into the Printf-style function the
// module's code takes for its log lines (cloister.Options.Logger at a
// level).
package logf

import (
	"context"
	"fmt"
	"log/slog"
)

// To is Printf-style logging into l at level; a nil l is slog.Default() as
// of the first line. The text is formatted only when l takes level.
func To(l *slog.Logger, level slog.Level) func(format string, args ...interface{}) {
	return func(format string, args ...interface{}) {
		if l == nil {
			l = slog.Default()
		}
		if l.Enabled(context.Background(), level) {
			l.Log(context.Background(), level, fmt.Sprintf(format, args...))
		}
	}
}
