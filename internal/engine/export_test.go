package engine

// RefusedSchema are statements that could make Durable's own statements
// run an object's code, or put the object's objects among Durable's
// tables: the sandbox must refuse each (TestSQLSandboxRefusesSchemaThatReachesDurablesTables),
// and none may skip the check after a schema change (TestEveryRefusedSchemaIsChecked).
var RefusedSchema = []string{
	// Triggers on Durable's tables: the body would run with Durable's
	// privileges on every commit.
	`CREATE TRIGGER evil AFTER INSERT ON _durable_kv BEGIN DELETE FROM _durable_kv; END`,
	`CREATE TRIGGER evil AFTER UPDATE ON _durable_state BEGIN INSERT INTO u SELECT state FROM _durable_state; END`,
	`CREATE TRIGGER evil BEFORE INSERT ON main._durable_state BEGIN SELECT RAISE(ABORT, 'no'); END`,
	`CREATE TRIGGER evil BEFORE INSERT ON "_DURABLE_KV" BEGIN SELECT RAISE(ABORT, 'no'); END`,
	`CREATE TEMP TRIGGER evil BEFORE INSERT ON main._durable_alarm BEGIN SELECT RAISE(ABORT, 'no'); END`,
	`CREATE TRIGGER temp.evil AFTER INSERT ON main._durable_kv BEGIN DELETE FROM _durable_kv; END`,
	// Triggers on the object's tables whose bodies touch Durable's.
	`CREATE TRIGGER sneaky AFTER INSERT ON t BEGIN DELETE FROM _durable_kv; END`,
	`CREATE TRIGGER sneaky AFTER INSERT ON t BEGIN DELETE FROM [_durable_kv]; END`,
	`CREATE TRIGGER sneaky AFTER INSERT ON t WHEN (SELECT count(*) FROM "_durable_state") > 0 BEGIN SELECT 1; END`,
	// Views and indexes on Durable's tables (an expression index is code
	// run on Durable's writes).
	`CREATE VIEW v AS SELECT * FROM _durable_kv`,
	`CREATE VIEW v AS SELECT state FROM main."_durable_state"`,
	`CREATE INDEX evil ON _durable_kv (value)`,
	`CREATE INDEX evil ON _durable_kv (json(value))`,
	`CREATE UNIQUE INDEX evil ON _durable_state (state)`,
	// Renames into Durable's namespace, the object's trigger included.
	`ALTER TABLE t RENAME TO _durable_x`,
	`ALTER TABLE main.t RENAME TO "_Durable_X"`,
	`ALTER TABLE _durable_kv RENAME TO mine`,
	`ALTER TABLE _durable_kv RENAME COLUMN value TO v`,
	`ALTER TABLE _durable_kv ADD COLUMN y`,
	// Foreign keys into Durable's tables: Durable's deletes would cascade
	// into the object's tables and fire their triggers.
	`CREATE TABLE c (k TEXT REFERENCES _durable_kv (key) ON DELETE CASCADE)`,
	`ALTER TABLE u ADD COLUMN k TEXT REFERENCES _durable_kv (key)`,
	// Copying Durable's tables.
	`CREATE TABLE copy AS SELECT * FROM _durable_state`,
	// Creating, dropping or naming Durable's tables.
	`CREATE TABLE _durable_mine (x)`,
	`CREATE VIEW _durable_v AS SELECT 1`,
	`CREATE INDEX _durable_i ON t (x)`,
	`CREATE TRIGGER _durable_tr AFTER INSERT ON t BEGIN SELECT 1; END`,
	`DROP TABLE _durable_kv`,
	`DROP TABLE _durable_alarm`,
	// TEMP objects, in every spelling.
	`CREATE TEMP TABLE tt (x)`,
	`CREATE TEMPORARY TABLE tt (x)`,
	`CREATE TABLE temp.tt (x)`,
	`CREATE TEMP VIEW tv AS SELECT 1`,
	`CREATE VIEW temp.tv AS SELECT 1`,
	`CREATE TEMP TRIGGER tq AFTER INSERT ON t BEGIN SELECT 1; END`,
	`CREATE TRIGGER temp.tq AFTER INSERT ON main.t BEGIN SELECT 1; END`,
	// A virtual table whose shadow tables would be _durable_*.
	`CREATE VIRTUAL TABLE _durable USING fts5(x)`,
	`CREATE VIRTUAL TABLE "_DURABLE" USING fts5(x)`,
	// A refused statement after an allowed one in the same Exec.
	`CREATE TABLE fine (x); ALTER TABLE fine RENAME TO _durable_y`,
}
