@p2 @load
Feature: Load: over 1000 concurrent clients, no request lost
  Locust drives 1500 users that each keep one native task in flight against a real queen, hive
  and worker (tiny model, 4 slots). Every request must stream to its end: those beyond the slots
  wait in the queen's admission queue instead of failing. While the users ramp up, one long task
  per slot keeps the worker busy, so every user's first request waits in the queue however fast
  the machine serves; once the queen holds a request of every user, those long tasks are
  cancelled and the queue drains.

  Scenario: 1500 concurrent clients for 20 seconds get every answer in full
    Given daemons start with RBEE_RATE_LIMIT_PER_S set to "0"
    And daemons start with RBEE_MAX_CONCURRENT_PER_CLIENT set to "0"
    And daemons start with RBEE_ADMISSION_QUEUE_DEPTH set to "2000"
    And a queen on free loopback ports whose workers have 4 slots
    And a worker for the tiny model has served a task through the queen
    And long tasks through the queen hold every slot of that worker
    When Locust runs 1500 users against the queen for 20 seconds, the long tasks cancelled once the queen holds a request of every user
    Then the long tasks ended cancelled, each having held its slot until then
    And Locust exits 0 with no failed request and at least 1000 requests answered
    And Locust's users had at least 1000 requests streaming from the queen at once, by their own count
    And the queen's admission queue is empty
