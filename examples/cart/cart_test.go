package cart_test

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"path/filepath"
	"testing"
	"time"

	"connectrpc.com/connect"
	_ "github.com/ncruces/go-sqlite3/driver"
	"google.golang.org/protobuf/proto"

	"github.com/durablego/durable"
	"github.com/durablego/durable/examples/cart"
	"github.com/durablego/durable/examples/internal/exampletest"
	cartv1 "github.com/durablego/durable/gen/examples/cart/v1"
	"github.com/durablego/durable/gen/examples/cart/v1/cartv1durable"
)

var (
	ctx = context.Background()
	t0  = time.UnixMilli(1_700_000_000_000)
)

// openOrders opens the orders database in dir, closed when the test ends,
// after the server, whose cleanup is registered later, has shut down.
func openOrders(t *testing.T, dir string) *sql.DB {
	t.Helper()
	db, err := cart.OpenOrders(filepath.Join(dir, "orders.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

func start(t *testing.T, clock *exampletest.Clock) (*cartv1durable.CartNamespace, string) {
	t.Helper()
	dir := t.TempDir()
	orders := openOrders(t, dir)
	srv := exampletest.Start(t, dir)
	ns, err := cartv1durable.RegisterCart(srv.Server, cart.Cart{Orders: orders, Now: clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	return ns, dir
}

func add(t *testing.T, c cartv1durable.CartStub, product string, quantity int64) []*cartv1.CartItem {
	t.Helper()
	r, err := c.AddItem(ctx, &cartv1.AddItemRequest{ProductId: product, Quantity: quantity})
	if err != nil {
		t.Fatalf("AddItem %s x%d: %v", product, quantity, err)
	}
	return r.GetItems()
}

func items(t *testing.T, c cartv1durable.CartStub) []*cartv1.CartItem {
	t.Helper()
	r, err := c.GetItems(ctx, &cartv1.GetItemsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	return r.GetItems()
}

func wantItems(t *testing.T, what string, got []*cartv1.CartItem, want ...*cartv1.CartItem) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: items %v, want %v", what, got, want)
	}
	for i := range want {
		if !proto.Equal(got[i], want[i]) {
			t.Fatalf("%s: items %v, want %v", what, got, want)
		}
	}
}

func item(product string, quantity int64) *cartv1.CartItem {
	return &cartv1.CartItem{ProductId: product, Quantity: quantity}
}

// order is a row of the orders table.
type order struct {
	id, revision, createdAtMs int64
	cartID                    string
	items                     []cart.OrderItem
}

// readOrders reads the orders table back through a connection of its own.
func readOrders(t *testing.T, dir string) []order {
	t.Helper()
	db, err := sql.Open("sqlite3", "file:"+filepath.ToSlash(filepath.Join(dir, "orders.db"))+"?mode=ro")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	rows, err := db.Query(`SELECT id, cart_id, revision, items, created_at_ms FROM orders ORDER BY id`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out []order
	for rows.Next() {
		var o order
		var text string
		if err := rows.Scan(&o.id, &o.cartID, &o.revision, &text, &o.createdAtMs); err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal([]byte(text), &o.items); err != nil {
			t.Fatalf("order %d: items %q: %v", o.id, text, err)
		}
		out = append(out, o)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

func TestAddItemsAndCheckout(t *testing.T) {
	clock := exampletest.NewClock(t0)
	ns, dir := start(t, clock)
	c := ns.Get(ns.IDFromName("user-123-cart"))

	wantItems(t, "a new cart", items(t, c))
	wantItems(t, "AddItem prod_123 x2", add(t, c, "prod_123", 2), item("prod_123", 2))
	wantItems(t, "AddItem prod_456 x1", add(t, c, "prod_456", 1), item("prod_123", 2), item("prod_456", 1))
	// The same product again merges into its line.
	wantItems(t, "AddItem prod_123 x3", add(t, c, "prod_123", 3), item("prod_123", 5), item("prod_456", 1))
	wantItems(t, "GetItems", items(t, c), item("prod_123", 5), item("prod_456", 1))

	clock.Advance(time.Minute)
	r, err := c.Checkout(ctx, &cartv1.CheckoutRequest{})
	if err != nil {
		t.Fatalf("Checkout: %v", err)
	}
	if !r.GetSuccess() || r.GetOrderId() == 0 {
		t.Fatalf("Checkout = %v, want success and an order id", r)
	}
	wantItems(t, "after checkout", items(t, c))

	orders := readOrders(t, dir)
	if len(orders) != 1 {
		t.Fatalf("orders table holds %d rows, want 1: %+v", len(orders), orders)
	}
	o := orders[0]
	wantOrderItems := []cart.OrderItem{{ProductID: "prod_123", Quantity: 5}, {ProductID: "prod_456", Quantity: 1}}
	if o.id != r.GetOrderId() || o.cartID != c.ID().String() || o.createdAtMs != t0.Add(time.Minute).UnixMilli() ||
		len(o.items) != 2 || o.items[0] != wantOrderItems[0] || o.items[1] != wantOrderItems[1] {
		t.Fatalf("order row %+v, want id %d, cart %s, items %v, created at %d",
			o, r.GetOrderId(), c.ID(), wantOrderItems, t0.Add(time.Minute).UnixMilli())
	}

	// An empty cart cannot check out, and writes no order.
	_, err = c.Checkout(ctx, &cartv1.CheckoutRequest{})
	exampletest.WantError(t, "Checkout of an empty cart", err, connect.CodeFailedPrecondition, "cart is empty")
	if !errors.Is(err, cart.ErrEmpty) {
		t.Errorf("errors.Is(err, ErrEmpty) = false for %v", err)
	}
	if n := len(readOrders(t, dir)); n != 1 {
		t.Fatalf("orders after the refused checkout: %d, want 1", n)
	}

	// The cart fills again, and its next order is a new row; another cart
	// writes its own.
	add(t, c, "prod_789", 1)
	other := ns.Get(ns.IDFromName("user-456-cart"))
	add(t, other, "prod_123", 1)
	r2, err := c.Checkout(ctx, &cartv1.CheckoutRequest{})
	if err != nil {
		t.Fatal(err)
	}
	r3, err := other.Checkout(ctx, &cartv1.CheckoutRequest{})
	if err != nil {
		t.Fatal(err)
	}
	orders = readOrders(t, dir)
	if len(orders) != 3 || orders[1].id != r2.GetOrderId() || orders[1].cartID != c.ID().String() ||
		orders[2].id != r3.GetOrderId() || orders[2].cartID != other.ID().String() ||
		len(orders[2].items) != 1 || orders[2].items[0] != (cart.OrderItem{ProductID: "prod_123", Quantity: 1}) {
		t.Fatalf("orders %+v, want a second one for %s and one for %s", orders, c.ID(), other.ID())
	}
}

// TestRetriedCheckoutWritesOneOrder calls Checkout directly, twice with the
// same cart, as happens when the cart's commit fails after the order was
// written and the caller retries: one order, found again.
func TestRetriedCheckoutWritesOneOrder(t *testing.T) {
	dir := t.TempDir()
	c := cart.Cart{Orders: openOrders(t, dir), Now: exampletest.NewClock(t0).Now}
	id := durable.IDFromBytes("Cart", [32]byte{1}, "retry")
	full := &cartv1.CartState{Items: []*cartv1.CartItem{item("p", 2)}, Revision: 4}

	o := &cartv1durable.CartObject{ID: id, State: proto.Clone(full).(*cartv1.CartState)}
	first, err := c.Checkout(ctx, o, &cartv1.CheckoutRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if len(o.State.GetItems()) != 0 {
		t.Fatalf("items after checkout: %v", o.State.GetItems())
	}

	o = &cartv1durable.CartObject{ID: id, State: proto.Clone(full).(*cartv1.CartState)} // the commit was lost
	again, err := c.Checkout(ctx, o, &cartv1.CheckoutRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if again.GetOrderId() != first.GetOrderId() {
		t.Fatalf("retried checkout wrote order %d, first %d; want the same", again.GetOrderId(), first.GetOrderId())
	}
	if n := len(readOrders(t, dir)); n != 1 {
		t.Fatalf("%d orders after a retried checkout, want 1", n)
	}
}

// TestInvalidRequestsAreRefused needs the server to validate requests
// against their protovalidate rules.
func TestInvalidRequestsAreRefused(t *testing.T) {
	ns, _ := start(t, exampletest.NewClock(t0))
	c := ns.Get(ns.IDFromName("cart"))
	add(t, c, "p", 1)
	for _, req := range []*cartv1.AddItemRequest{
		{ProductId: "p", Quantity: 0},
		{ProductId: "p", Quantity: -3},
		{ProductId: "p", Quantity: 1001},
		{ProductId: "", Quantity: 1},
	} {
		_, err := c.AddItem(ctx, req)
		exampletest.WantError(t, "AddItem "+req.String(), err, connect.CodeInvalidArgument, "")
	}
	wantItems(t, "after refused calls", items(t, c), item("p", 1))
}
