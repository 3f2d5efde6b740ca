package storage_test

import (
	"path/filepath"
	"testing"

	"github.com/durablego/durable/storage"
	"github.com/durablego/durable/storage/storagetest"
)

// TestObjectStoreContract holds the node database to the ObjectStore
// contract; the cluster module runs the same tests on the etcd store.
func TestObjectStoreContract(t *testing.T) {
	storagetest.Run(t, func(t *testing.T) storage.ObjectStore {
		return openDB(t, filepath.Join(t.TempDir(), "objects.db"))
	})
}
