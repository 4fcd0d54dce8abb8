-- Task groups. A member's group_id is its group's root id; a root has open_members, the count
-- of its members not yet final, and waits (scheduled, never due) until it falls to zero. Only
-- grouped tasks are in the index, so other tasks maintain nothing more. Adding nullable columns
-- is instant; the index over no rows is built at once.
ALTER TABLE tasks
    ADD COLUMN IF NOT EXISTS group_id uuid,
    ADD COLUMN IF NOT EXISTS open_members bigint;
CREATE INDEX IF NOT EXISTS tasks_group ON tasks (group_id, id) WHERE group_id IS NOT NULL;
