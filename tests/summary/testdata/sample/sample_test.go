package sample

import (
	"os"
	"testing"
)

func TestPasses(t *testing.T) { t.Log("fine") }

func TestSkips(t *testing.T) { t.Skip("no Docker engine answers") }

func TestFailsOnRequest(t *testing.T) {
	if os.Getenv("SUMMARY_SAMPLE_FAIL") == "1" {
		t.Fatal("the failure a reader must see")
	}
}
