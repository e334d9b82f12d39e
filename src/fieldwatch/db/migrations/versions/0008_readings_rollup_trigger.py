"""rollups and latest values maintained by the database on PostgreSQL

A statement-level trigger on ``readings`` folds exactly the rows each statement inserted
(its transition table) into ``rollup_1m``, ``rollup_1h`` and the series' latest values.
Every way readings arrive is covered by one rule: the writer's plain ``COPY`` (the fast
path), its deduplicating ``INSERT … ON CONFLICT DO NOTHING`` (rows skipped as duplicates
are not in the transition table), and hand-written SQL. SQLite keeps doing this in the
application.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-01
"""

from __future__ import annotations

from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

#: Rollup and series rows are touched in key order, so concurrent writers do not
#: deadlock; the hourly rollup is folded from the minute groups, not from the rows.
#: Buckets are UTC whatever the session's time zone.
FUNCTION = """
CREATE OR REPLACE FUNCTION fieldwatch_readings_inserted() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    WITH m AS (
        SELECT series_id, date_trunc('minute', ts, 'UTC') AS bucket,
               count(*) AS count, sum(value) AS sum, min(value) AS min, max(value) AS max
        FROM new_rows WHERE value IS NOT NULL GROUP BY 1, 2
    ), minute AS (
        INSERT INTO rollup_1m AS r (series_id, bucket, count, sum, min, max)
        SELECT series_id, bucket, count, sum, min, max FROM m ORDER BY 1, 2
        ON CONFLICT (series_id, bucket) DO UPDATE SET
            count = r.count + EXCLUDED.count, sum = r.sum + EXCLUDED.sum,
            min = LEAST(r.min, EXCLUDED.min), max = GREATEST(r.max, EXCLUDED.max)
    )
    INSERT INTO rollup_1h AS r (series_id, bucket, count, sum, min, max)
    SELECT series_id, date_trunc('hour', bucket, 'UTC'), sum(count), sum(sum), min(min), max(max)
    FROM m GROUP BY 1, 2 ORDER BY 1, 2
    ON CONFLICT (series_id, bucket) DO UPDATE SET
        count = r.count + EXCLUDED.count, sum = r.sum + EXCLUDED.sum,
        min = LEAST(r.min, EXCLUDED.min), max = GREATEST(r.max, EXCLUDED.max);

    UPDATE series AS s SET last_ts = u.ts, last_value = u.value,
        last_text = u.text_value, last_quality = u.quality
    FROM (
        SELECT DISTINCT ON (series_id) series_id, ts, value, text_value, quality
        FROM new_rows ORDER BY series_id, ts DESC
    ) AS u
    WHERE s.id = u.series_id AND (s.last_ts IS NULL OR s.last_ts < u.ts);
    RETURN NULL;
END
$$
"""

TRIGGER = """
CREATE TRIGGER readings_inserted AFTER INSERT ON readings
REFERENCING NEW TABLE AS new_rows
FOR EACH STATEMENT EXECUTE FUNCTION fieldwatch_readings_inserted()
"""


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute(FUNCTION)
    op.execute(TRIGGER)


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute("DROP TRIGGER IF EXISTS readings_inserted ON readings")
    op.execute("DROP FUNCTION IF EXISTS fieldwatch_readings_inserted()")
