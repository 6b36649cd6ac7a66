-- Deterministic synthetic seed (no random(): the same sizes always give the same rows, so checksums are
-- comparable across runs). psql variables: classes, pupils_per_class, grades_per_pupil, attendance_per_pupil.
-- Runs in one transaction and only into empty tables (the role checks before calling it).
\set ON_ERROR_STOP on
BEGIN;
INSERT INTO classes (id, name, grade_level, school_year)
SELECT c, ((c - 1) % 11 + 1) || '-' || chr(1040 + (c - 1) / 11 % 4), (c - 1) % 11 + 1, 2026
FROM generate_series(1, :classes) AS c;

INSERT INTO pupils (id, pupil_uid, class_id, last_name, first_name, birth_date)
SELECT p,
       'P' || lpad(p::text, 8, '0'),
       (p - 1) % :classes + 1,
       (ARRAY['Иванов', 'Смирнов', 'Кузнецов', 'Попов', 'Васильев', 'Петров', 'Соколов', 'Михайлов'])[p % 8 + 1],
       (ARRAY['Анна', 'Иван', 'Мария', 'Пётр', 'Ольга', 'Дмитрий', 'Елена', 'Алексей'])[p % 7 + 1],
       date '2010-01-01' + (p * 37 % 3650)
FROM generate_series(1, :classes * :pupils_per_class) AS p;

INSERT INTO grades (id, pupil_id, subject, grade, given_on, teacher_id, comment)
SELECT g,
       (g - 1) / :grades_per_pupil + 1,
       (ARRAY['Математика', 'Русский язык', 'Литература', 'История', 'Физика', 'Химия', 'Биология',
              'География', 'Информатика', 'Английский язык'])[(g % 10 + 1)::int],
       (g * 7919 % 5) + 1,
       date '2026-09-01' + (g % 240)::int,
       'T' || lpad((g % 97)::text, 4, '0'),
       CASE WHEN g % 4 = 0 THEN 'Работа на уроке, домашнее задание №' || (g % 50) ELSE NULL END
FROM generate_series(1::bigint, :classes::bigint * :pupils_per_class * :grades_per_pupil) AS g;

INSERT INTO attendance (id, pupil_id, day, lesson, status)
SELECT a,
       (a - 1) / :attendance_per_pupil + 1,
       date '2026-09-01' + ((a - 1) / 6 % 240)::int,
       (a - 1) % 6 + 1,
       (ARRAY['present', 'present', 'present', 'present', 'present', 'present', 'late', 'absent', 'excused'])[(a % 9 + 1)::int]
FROM generate_series(1::bigint, :classes::bigint * :pupils_per_class * :attendance_per_pupil) AS a;
COMMIT;
ANALYZE;
