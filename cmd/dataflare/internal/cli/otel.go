package cli

import (
	"fmt"
	"strings"
)

// tracingWanted reports whether the standard OpenTelemetry environment asks
// for traces to be exported: OTEL_TRACES_EXPORTER=otlp, or an OTLP
// endpoint, unless OTEL_TRACES_EXPORTER=none or OTEL_SDK_DISABLED=true.
func tracingWanted(getenv func(string) string) (bool, error) {
	if strings.EqualFold(getenv("OTEL_SDK_DISABLED"), "true") {
		return false, nil
	}
	switch exp := strings.ToLower(strings.TrimSpace(getenv("OTEL_TRACES_EXPORTER"))); exp {
	case "none":
		return false, nil
	case "otlp":
		return true, nil
	case "":
	default:
		return false, fmt.Errorf("OTEL_TRACES_EXPORTER=%s: only otlp and none are supported", exp)
	}
	return getenv("OTEL_EXPORTER_OTLP_ENDPOINT") != "" || getenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") != "", nil
}
