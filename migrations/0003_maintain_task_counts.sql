-- task_counts (0002) is kept exact by these triggers on tasks, in the transaction of every write: the only place
-- it is maintained. Then the backfill counts the tasks that exist already.
-- Writers of tasks wait from here until this migration commits (drizzle runs all pending migrations in one
-- transaction), so the backfill sees every task committed before, and the triggers catch every one after.
LOCK TABLE "tasks" IN SHARE ROW EXCLUSIVE MODE;
--> statement-breakpoint
-- The rows one statement inserted (added) or deleted (subtracted), counted per user in one upsert: a bulk
-- INSERT … SELECT of millions of rows runs this once. Users in order, so concurrent multi-user statements lock their
-- counter rows in the same order and cannot deadlock. A deleted task's user always has a row (its insert made it).
CREATE FUNCTION "task_counts_apply_statement"() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
  sign integer := CASE TG_OP WHEN 'INSERT' THEN 1 ELSE -1 END;
BEGIN
  INSERT INTO task_counts (user_id, total, completed)
  SELECT user_id, sign * count(*), sign * count(*) FILTER (WHERE completed) FROM changed GROUP BY user_id ORDER BY user_id
  ON CONFLICT (user_id) DO UPDATE SET total = task_counts.total + excluded.total, completed = task_counts.completed + excluded.completed;
  RETURN NULL;
END
$$;
--> statement-breakpoint
-- One updated row whose completed or owner changed (the trigger's WHEN lets no other update through).
CREATE FUNCTION "task_counts_apply_update"() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF OLD.user_id = NEW.user_id THEN
    UPDATE task_counts SET completed = completed + NEW.completed::int - OLD.completed::int WHERE user_id = NEW.user_id;
  ELSE
    UPDATE task_counts SET total = total - 1, completed = completed - OLD.completed::int WHERE user_id = OLD.user_id;
    INSERT INTO task_counts (user_id, total, completed) VALUES (NEW.user_id, 1, NEW.completed::int)
    ON CONFLICT (user_id) DO UPDATE SET total = task_counts.total + 1, completed = task_counts.completed + excluded.completed;
  END IF;
  RETURN NULL;
END
$$;
--> statement-breakpoint
CREATE FUNCTION "task_counts_empty"() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  TRUNCATE task_counts;
  RETURN NULL;
END
$$;
--> statement-breakpoint
-- Statement-level with transition tables: PostgreSQL allows those on one event per trigger and without a column list.
CREATE TRIGGER "task_counts_insert" AFTER INSERT ON "tasks" REFERENCING NEW TABLE AS changed
FOR EACH STATEMENT EXECUTE FUNCTION "task_counts_apply_statement"();
--> statement-breakpoint
CREATE TRIGGER "task_counts_delete" AFTER DELETE ON "tasks" REFERENCING OLD TABLE AS changed
FOR EACH STATEMENT EXECUTE FUNCTION "task_counts_apply_statement"();
--> statement-breakpoint
-- Row-level, and only when completed or the owner changes: a title edit queues no trigger call at all.
CREATE TRIGGER "task_counts_update" AFTER UPDATE OF "completed", "user_id" ON "tasks"
FOR EACH ROW WHEN (OLD."completed" IS DISTINCT FROM NEW."completed" OR OLD."user_id" IS DISTINCT FROM NEW."user_id")
EXECUTE FUNCTION "task_counts_apply_update"();
--> statement-breakpoint
CREATE TRIGGER "task_counts_truncate" AFTER TRUNCATE ON "tasks"
FOR EACH STATEMENT EXECUTE FUNCTION "task_counts_empty"();
--> statement-breakpoint
INSERT INTO "task_counts" ("user_id", "total", "completed")
SELECT "user_id", count(*), count(*) FILTER (WHERE "completed") FROM "tasks" GROUP BY "user_id";
