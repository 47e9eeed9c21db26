// Package apicheck holds the test that lists the module's public API in testdata/api.txt, so that
// every change to an exported name, signature or field shows as a diff of that file in review.
// Run `go test ./internal/apicheck -update` after an intended change to regenerate it.
package apicheck
