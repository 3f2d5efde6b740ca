// Package analytics implements the reference page's SQLite example: events
// in the object's own SQL database, with the reference's table and index.
package analytics

import (
	"context"
	"fmt"
	"time"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/durablego/durable"
	analyticsv1 "github.com/durablego/durable/gen/examples/analytics/v1"
	"github.com/durablego/durable/gen/examples/analytics/v1/analyticsv1durable"
)

// Schema is the reference page's events table and its timestamp index.
const Schema = `
CREATE TABLE IF NOT EXISTS events (
	id INTEGER PRIMARY KEY,
	name TEXT NOT NULL,
	properties TEXT,
	timestamp INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS idx_events_timestamp ON events (timestamp);
`

// DefaultLimit is the number of events GetRecentEvents returns when the
// request sets none.
const DefaultLimit = 100

// Analytics implements analyticsv1durable.Analytics. Its Now field is the
// clock, time.Now when nil, so tests can control the events' timestamps.
type Analytics struct {
	Now func() time.Time
}

var (
	_ analyticsv1durable.Analytics                     = Analytics{}
	_ durable.Initializer[*analyticsv1.AnalyticsState] = Analytics{}
)

func (a Analytics) now() time.Time {
	if a.Now != nil {
		return a.Now()
	}
	return time.Now()
}

// Init creates the events table and its index in a new object's database.
func (Analytics) Init(ctx context.Context, o *analyticsv1durable.AnalyticsObject) error {
	if _, err := o.SQL.Exec(ctx, Schema); err != nil {
		return err
	}
	o.State.Initialized = true
	return nil
}

// TrackEvent inserts the event with the current time; its properties are
// stored as JSON text, or NULL when it has none.
func (a Analytics) TrackEvent(ctx context.Context, o *analyticsv1durable.AnalyticsObject, req *analyticsv1.TrackEventRequest) (*analyticsv1.TrackEventResponse, error) {
	var props any // NULL
	if req.GetProperties() != nil {
		b, err := protojson.Marshal(req.GetProperties())
		if err != nil {
			return nil, err
		}
		props = string(b)
	}
	ts := a.now().UnixMilli()
	c, err := o.SQL.Exec(ctx, `INSERT INTO events (name, properties, timestamp) VALUES (?, ?, ?) RETURNING id`,
		req.GetName(), props, ts)
	if err != nil {
		return nil, err
	}
	var id int64
	if !c.Next() {
		return nil, fmt.Errorf("analytics: INSERT returned no id")
	}
	if err := c.Scan(&id); err != nil {
		return nil, err
	}
	return &analyticsv1.TrackEventResponse{Id: id, TimestampMs: ts}, nil
}

// GetRecentEvents returns the latest events, newest first (the later id
// first among events of the same millisecond).
func (Analytics) GetRecentEvents(ctx context.Context, o *analyticsv1durable.AnalyticsObject, req *analyticsv1.GetRecentEventsRequest) (*analyticsv1.GetRecentEventsResponse, error) {
	limit := int64(req.GetLimit())
	if limit == 0 {
		limit = DefaultLimit
	}
	c, err := o.SQL.Exec(ctx, `SELECT id, name, properties, timestamp FROM events ORDER BY timestamp DESC, id DESC LIMIT ?`, limit)
	if err != nil {
		return nil, err
	}
	res := &analyticsv1.GetRecentEventsResponse{}
	for c.Next() {
		e := &analyticsv1.Event{}
		var props any
		if err := c.Scan(&e.Id, &e.Name, &props, &e.TimestampMs); err != nil {
			return nil, err
		}
		if text, ok := props.(string); ok {
			e.Properties = &structpb.Struct{}
			if err := protojson.Unmarshal([]byte(text), e.Properties); err != nil {
				return nil, fmt.Errorf("analytics: event %d: properties: %w", e.Id, err)
			}
		}
		res.Events = append(res.Events, e)
	}
	return res, nil
}

// GetEventCounts counts the events recorded strictly after since_ms, per
// name, ordered by name.
func (Analytics) GetEventCounts(ctx context.Context, o *analyticsv1durable.AnalyticsObject, req *analyticsv1.GetEventCountsRequest) (*analyticsv1.GetEventCountsResponse, error) {
	c, err := o.SQL.Exec(ctx, `SELECT name, COUNT(*) AS count FROM events WHERE timestamp > ? GROUP BY name ORDER BY name`, req.GetSinceMs())
	if err != nil {
		return nil, err
	}
	res := &analyticsv1.GetEventCountsResponse{}
	for c.Next() {
		n := &analyticsv1.EventCount{}
		if err := c.Scan(&n.Name, &n.Count); err != nil {
			return nil, err
		}
		res.Counts = append(res.Counts, n)
	}
	return res, nil
}
