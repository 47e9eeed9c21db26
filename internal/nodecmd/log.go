package nodecmd

import (
	"flag"
	"fmt"
	"log"
	"strings"
)

// level is how severe a log line is; lower is more severe.
type level int

const (
	levelError level = iota
	levelWarning
	levelInfo
	levelDebug
)

var levelNames = map[string]level{"error": levelError, "warning": levelWarning, "warn": levelWarning, "info": levelInfo, "debug": levelDebug}

func parseLevel(s string) (level, error) {
	if l, ok := levelNames[strings.ToLower(s)]; ok {
		return l, nil
	}
	return 0, fmt.Errorf("-log-level %q: want error, warning, info or debug", s)
}

// levelOf reads a line's level from the way cloister writes it: "[error]",
// "[warning]" or "[debug]" first, or "cloister: debug:"; else info.
func levelOf(line string) level {
	switch {
	case strings.HasPrefix(line, "[error]"):
		return levelError
	case strings.HasPrefix(line, "[warning]"):
		return levelWarning
	case strings.HasPrefix(line, "[debug]"), strings.HasPrefix(line, "cloister: debug:"):
		return levelDebug
	}
	return levelInfo
}

// leveledLogf prints the lines at least as severe as min. Ergo's own
// warnings (a line per failed handshake, a dump of a failed start) are
// shown only at debug: cloister says once, in its own words, what they
// would repeat.
func leveledLogf(logger *log.Logger, min level) func(string, ...interface{}) {
	if f := flag.Lookup("ergo.warning"); f != nil {
		_ = f.Value.Set(fmt.Sprint(min >= levelDebug))
	}
	return func(format string, args ...interface{}) {
		line := fmt.Sprintf(format, args...)
		if levelOf(line) <= min {
			logger.Print(line)
		}
	}
}
