package durable_test

import (
	"encoding/json"
	"os"
	"regexp"
	"testing"

	"github.com/durablego/durable"
)

// TestTypeScriptPackageVersion checks that the TypeScript runtime package
// (web/durable/package.json) is released under the version of this module,
// so that the npm package and the Go module of one release go together,
// and that the version is semantic, as both npm and Go modules require.
func TestTypeScriptPackageVersion(t *testing.T) {
	data, err := os.ReadFile("web/durable/package.json")
	if err != nil {
		t.Fatal(err)
	}
	var pkg struct {
		Name    string `json:"name"`
		Version string `json:"version"`
		Private bool   `json:"private"`
	}
	if err := json.Unmarshal(data, &pkg); err != nil {
		t.Fatalf("web/durable/package.json: %v", err)
	}
	if pkg.Name != "@durablego/durable" || pkg.Private {
		t.Errorf("web/durable/package.json: name %q, private %t; want @durablego/durable, publishable", pkg.Name, pkg.Private)
	}
	if pkg.Version != durable.Version {
		t.Errorf("web/durable/package.json has version %q, durable.Version is %q", pkg.Version, durable.Version)
	}
	// semver.org's grammar, without build metadata (npm drops it).
	semver := regexp.MustCompile(`^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)(-(0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*)(\.(0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*))*)?$`)
	if !semver.MatchString(durable.Version) {
		t.Errorf("durable.Version %q is not a semantic version", durable.Version)
	}
}
