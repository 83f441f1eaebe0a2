-- The operator log: every change an operator makes (settings, concerts, schedules), written in
-- the same unit of work as the change, with who made it, when (the store's clock) and the
-- state before and after in one line each. `seq` orders the lines as their changes committed
-- closely enough for a log; the API pages by it.
CREATE TABLE operator_log (
    seq    bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at     timestamptz NOT NULL,
    actor  text NOT NULL,
    action text NOT NULL CHECK (action IN ('queue.update', 'concert.create', 'schedule.create')),
    target text NOT NULL,
    before text,
    after  text NOT NULL
);
