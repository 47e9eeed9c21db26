package nodecmd

import (
	"fmt"
	"log/slog"
	"strings"
)

var levelNames = map[string]slog.Level{"error": slog.LevelError, "warning": slog.LevelWarn, "warn": slog.LevelWarn,
	"info": slog.LevelInfo, "debug": slog.LevelDebug}

// parseLevel reads -log-level.
func parseLevel(s string) (slog.Level, error) {
	if l, ok := levelNames[strings.ToLower(s)]; ok {
		return l, nil
	}
	return 0, fmt.Errorf("-log-level %q: want error, warning, info or debug", s)
}
