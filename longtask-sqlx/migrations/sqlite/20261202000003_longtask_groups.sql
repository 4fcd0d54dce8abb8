-- Task groups. A member's group_id is its group's root id; a root has open_members, the count
-- of its members not yet final, and waits (scheduled, never due) until it falls to zero. Only
-- grouped tasks are in the index, so other tasks maintain nothing more.
ALTER TABLE longtask_tasks ADD COLUMN group_id BLOB;
ALTER TABLE longtask_tasks ADD COLUMN open_members INTEGER;

CREATE INDEX longtask_tasks_group
    ON longtask_tasks (group_id, id)
    WHERE group_id IS NOT NULL;
