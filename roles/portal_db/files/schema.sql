-- schoolgate lab stand-in for the school portal database (portal_db role). Idempotent: safe to re-run.
-- Synthetic data only; pupil_uid is the opaque id other systems see (never a name).
CREATE TABLE IF NOT EXISTS classes (
    id          integer PRIMARY KEY,
    name        text    NOT NULL,
    grade_level smallint NOT NULL CHECK (grade_level BETWEEN 1 AND 11),
    school_year smallint NOT NULL
);
CREATE TABLE IF NOT EXISTS pupils (
    id         bigint PRIMARY KEY,
    pupil_uid  text   NOT NULL UNIQUE,
    class_id   integer NOT NULL REFERENCES classes (id),
    last_name  text   NOT NULL,
    first_name text   NOT NULL,
    birth_date date   NOT NULL
);
CREATE TABLE IF NOT EXISTS grades (
    id         bigint PRIMARY KEY,
    pupil_id   bigint   NOT NULL REFERENCES pupils (id),
    subject    text     NOT NULL,
    grade      smallint NOT NULL CHECK (grade BETWEEN 1 AND 5),
    given_on   date     NOT NULL,
    teacher_id text     NOT NULL,
    comment    text
);
CREATE TABLE IF NOT EXISTS attendance (
    id       bigint PRIMARY KEY,
    pupil_id bigint   NOT NULL REFERENCES pupils (id),
    day      date     NOT NULL,
    lesson   smallint NOT NULL CHECK (lesson BETWEEN 1 AND 12),
    status   text     NOT NULL CHECK (status IN ('present', 'absent', 'late', 'excused'))
);
CREATE INDEX IF NOT EXISTS grades_pupil_idx ON grades (pupil_id);
CREATE INDEX IF NOT EXISTS attendance_pupil_idx ON attendance (pupil_id);
