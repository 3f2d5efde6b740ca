// Package cart implements the reference page's RPC-methods example: a
// shopping cart whose checkout writes the order into a database shared by
// every cart (the reference's env.DB), a dependency the implementation
// holds, then empties the cart.
package cart

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"time"

	"connectrpc.com/connect"
	_ "github.com/ncruces/go-sqlite3/driver" // database/sql driver "sqlite3"

	cartv1 "github.com/durablego/durable/gen/examples/cart/v1"
	"github.com/durablego/durable/gen/examples/cart/v1/cartv1durable"
)

// ErrEmpty fails the checkout of an empty cart, with the code
// FailedPrecondition.
var ErrEmpty = errors.New("cart is empty")

// OrdersSchema is the orders table every cart writes to. An order's cart ID
// and the cart's revision are unique, so a checkout retried after its
// order was written, but not the emptied cart (a failed commit), finds the
// order instead of writing it twice.
const OrdersSchema = `
CREATE TABLE IF NOT EXISTS orders (
	id INTEGER PRIMARY KEY,
	cart_id TEXT NOT NULL,
	revision INTEGER NOT NULL,
	items TEXT NOT NULL,
	created_at_ms INTEGER NOT NULL,
	UNIQUE (cart_id, revision)
);
`

// OrderItem is one line of an order, as the items column holds them in a
// JSON array.
type OrderItem struct {
	ProductID string `json:"product_id"`
	Quantity  int64  `json:"quantity"`
}

// OpenOrders opens, creating it and its directory if needed, the orders
// database at path, in WAL mode so that readers do not wait for writers.
func OpenOrders(path string) (*sql.DB, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(filepath.Dir(abs), 0o755); err != nil {
		return nil, err
	}
	dsn := (&url.URL{
		Scheme:   "file",
		OmitHost: true,
		Path:     filepath.ToSlash(abs),
		RawQuery: "_pragma=journal_mode(wal)&_pragma=synchronous(normal)&_pragma=busy_timeout(10000)",
	}).String()
	db, err := sql.Open("sqlite3", dsn)
	if err != nil {
		return nil, err
	}
	if _, err := db.Exec(OrdersSchema); err != nil {
		db.Close()
		return nil, fmt.Errorf("cart: orders database %s: %w", path, err)
	}
	return db, nil
}

// Cart implements cartv1durable.Cart. Orders is the shared orders database
// (see OpenOrders); Now is the clock, time.Now when nil.
type Cart struct {
	Orders *sql.DB
	Now    func() time.Time
}

var _ cartv1durable.Cart = Cart{}

func (c Cart) now() time.Time {
	if c.Now != nil {
		return c.Now()
	}
	return time.Now()
}

// AddItem adds the quantity to the product's line, or appends a line.
func (Cart) AddItem(_ context.Context, o *cartv1durable.CartObject, req *cartv1.AddItemRequest) (*cartv1.AddItemResponse, error) {
	var line *cartv1.CartItem
	for _, it := range o.State.Items {
		if it.GetProductId() == req.GetProductId() {
			line = it
			break
		}
	}
	if line == nil {
		line = &cartv1.CartItem{ProductId: req.GetProductId()}
		o.State.Items = append(o.State.Items, line)
	}
	line.Quantity += req.GetQuantity()
	o.State.Revision++
	// The server clones a response before the object runs its next call.
	return &cartv1.AddItemResponse{Items: o.State.Items}, nil
}

// GetItems returns the cart's lines.
func (Cart) GetItems(_ context.Context, o *cartv1durable.CartObject, _ *cartv1.GetItemsRequest) (*cartv1.GetItemsResponse, error) {
	return &cartv1.GetItemsResponse{Items: o.State.Items}, nil
}

// Checkout writes the order, then empties the cart. The order is written
// to another database than the cart, so the two cannot commit together: if
// the cart's commit fails after the order is written, the cart keeps its
// items and revision, and checking it out again returns the same order.
func (c Cart) Checkout(ctx context.Context, o *cartv1durable.CartObject, _ *cartv1.CheckoutRequest) (*cartv1.CheckoutResponse, error) {
	if len(o.State.Items) == 0 {
		return nil, connect.NewError(connect.CodeFailedPrecondition, ErrEmpty)
	}
	items := make([]OrderItem, len(o.State.Items))
	for i, it := range o.State.Items {
		items[i] = OrderItem{ProductID: it.GetProductId(), Quantity: it.GetQuantity()}
	}
	text, err := json.Marshal(items)
	if err != nil {
		return nil, err
	}
	cartID := o.ID.String()
	if _, err := c.Orders.ExecContext(ctx,
		`INSERT INTO orders (cart_id, revision, items, created_at_ms) VALUES (?, ?, ?, ?)
		 ON CONFLICT (cart_id, revision) DO NOTHING`,
		cartID, o.State.Revision, string(text), c.now().UnixMilli()); err != nil {
		return nil, fmt.Errorf("cart: writing the order: %w", err)
	}
	var orderID int64
	if err := c.Orders.QueryRowContext(ctx, `SELECT id FROM orders WHERE cart_id = ? AND revision = ?`,
		cartID, o.State.Revision).Scan(&orderID); err != nil {
		return nil, fmt.Errorf("cart: reading the order back: %w", err)
	}
	o.State.Items = nil
	return &cartv1.CheckoutResponse{Success: true, OrderId: orderID}, nil
}
