package security

import (
	"testing"

	"go.uber.org/goleak"

	"github.com/dataflare/dataflare/internal/natstest"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m, natstest.LeakOptions()...)
}
