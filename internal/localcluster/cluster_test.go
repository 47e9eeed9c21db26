package localcluster

import (
	"testing"

	"github.com/cloister-go/cloister/internal/testenv"
)

// An epmd already on the port is used and left running at Close; on a
// free port one is started and stopped with the harness.
func TestEPMDJoinedOrOwned(t *testing.T) {
	mine, err := testenv.StartEPMD()
	if err != nil {
		t.Skip("no epmd installed:", err)
	}
	defer mine.Stop()
	h, err := New("/nonexistent", Options{EPMDPort: mine.Port})
	if err != nil {
		t.Fatal(err)
	}
	if h.EPMD.Port != mine.Port || h.Cookie != DefaultCookie {
		t.Fatalf("port %d cookie %q", h.EPMD.Port, h.Cookie)
	}
	h.Close()
	if !listening(mine.Port) {
		t.Fatal("Close stopped an epmd it did not start")
	}

	free, err := testenv.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	h, err = New("/nonexistent", Options{EPMDPort: free, Cookie: "c"})
	if err != nil {
		t.Fatal(err)
	}
	if !listening(free) || h.Cookie != "c" {
		t.Fatalf("no epmd started on %d", free)
	}
	h.Close()
	if listening(free) {
		t.Fatal("Close left the epmd it started running")
	}
}
