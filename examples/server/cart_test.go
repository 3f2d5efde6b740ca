package main

import (
	"context"
	"database/sql"
	"net/http"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	_ "github.com/ncruces/go-sqlite3/driver"

	cartv1 "github.com/durablego/durable/gen/examples/cart/v1"
	"github.com/durablego/durable/gen/examples/cart/v1/cartv1durable"
)

// TestCartOrdersInDataDir checks out a cart over the network and finds the
// order in <data>/orders.db once the server has stopped cleanly.
func TestCartOrdersInDataDir(t *testing.T) {
	data := t.TempDir()
	ctx := context.Background()
	p := start(t, data)
	carts := cartv1durable.NewCartClient(&http.Client{Timeout: 10 * time.Second}, p.url)
	c := carts.Get(carts.IDFromName("user-123-cart"))
	if _, err := c.AddItem(ctx, &cartv1.AddItemRequest{ProductId: "prod_123", Quantity: 2}); err != nil {
		t.Fatal(err)
	}
	res, err := c.Checkout(ctx, &cartv1.CheckoutRequest{})
	if err != nil || !res.GetSuccess() {
		t.Fatalf("Checkout = %v, %v", res, err)
	}
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := <-p.exited; err != nil {
		t.Fatalf("server did not exit cleanly on SIGTERM: %v\n%s", err, p.stderr)
	}

	db, err := sql.Open("sqlite3", "file:"+filepath.ToSlash(filepath.Join(data, "orders.db"))+"?mode=ro")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var items string
	if err := db.QueryRow(`SELECT items FROM orders WHERE id = ?`, res.GetOrderId()).Scan(&items); err != nil {
		t.Fatalf("order %d in orders.db: %v", res.GetOrderId(), err)
	}
	if items != `[{"product_id":"prod_123","quantity":2}]` {
		t.Fatalf("order items %s", items)
	}
}
