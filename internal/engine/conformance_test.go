package engine_test

import (
	"path/filepath"
	"testing"

	"github.com/durablego/durable/internal/engine"
	"github.com/durablego/durable/internal/storetest"
)

// TestObjectStoreContract holds the node database to the ObjectStore
// contract; the cluster module runs the same tests on the etcd store.
func TestObjectStoreContract(t *testing.T) {
	storetest.Run(t, func(t *testing.T) engine.ObjectStore {
		return openDB(t, filepath.Join(t.TempDir(), "objects.db"))
	})
}
