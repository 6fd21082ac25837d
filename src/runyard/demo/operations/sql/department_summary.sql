-- One row per department: its people and the time off they took up to the run's execution date.
SELECT
  h.department,
  h.headcount,
  h.active_headcount,
  h.average_salary,
  coalesce(t.requests, 0) AS time_off_requests,
  coalesce(t.days_off, 0) AS days_off,
  CAST(coalesce(t.days_off, 0) / h.headcount AS DECIMAL(12, 2)) AS days_off_per_head,
  {{ FD_DATE }} AS as_of
FROM headcount_by_department AS h
LEFT JOIN time_off_by_department AS t USING (department_id)
ORDER BY h.department
