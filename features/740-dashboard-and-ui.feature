@p2 @observability
Feature: Grafana dashboard and the queen's status page
  docs/grafana/rbee.json only plots metrics the daemons really export; the queen serves a
  read-only status page at /ui behind the same token as its API.

  Scenario: Every metric the Grafana dashboard plots is exported by a live daemon
    Given token files for the queen, the hive and the worker
    And a queen with those tokens on free loopback ports
    And I stream a native task through the queen with the queen's token
    When I read /metrics of the queen, the hive and the worker
    Then every metric name in the expressions of docs/grafana/rbee.json is among them
    And docs/monitoring.md documents every metric they export

  Scenario: The status page needs the queen's token and asks a browser for it
    Given token files for the queen, the hive and the worker
    And a queen with those tokens on free loopback ports
    Then GET /ui on the queen answers 401 with a Basic challenge
    And GET /ui/status on the queen answers 200 with the queen's token
    And GET /ui on the queen answers 200 with the queen's token as the Basic password

  Scenario: The status page in headless Chromium shows a running worker and refreshes itself
    Given token files for the queen, the hive and the worker
    And a queen with those tokens on free loopback ports
    And I stream a native task through the queen with the queen's token
    When headless Chromium opens /ui with the queen's token
    Then the page lists the worker, the node "localhost" and the tiny model, refreshed without a problem
    And a screenshot of the page is kept in reports/ui-status.png
