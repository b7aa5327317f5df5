@p1 @security
Feature: Hostile HTTP against every daemon
  Raw sockets send what no well-behaved client sends (broken framing, oversized headers, clients
  too slow or too idle, bodies nested too deep or not decodable, too many connections) to a real
  queen, hive and worker, each with a token, and with short limits (header 1 s, body 1 s, idle
  2 s, 24 connections per address). Each daemon refuses or closes as its limits say and still
  serves its health check and a real request afterwards; no log holds a traceback.

  Background:
    Given token files for the queen, the hive and the worker
    And daemons start with short HTTP limits
    And a queen with those tokens on free loopback ports
    And I stream a native task through the queen with the queen's token

  Scenario Outline: <attack> is answered <status> by the queen, the hive and the worker
    When I send "<attack>" to the queen, the hive and the worker
    Then each answered <status> and closed the connection
    And the queen, the hive and the worker still serve their health check and a real request
    And no daemon's log has a traceback

    Examples:
      | attack                                     | status |
      | a request line that is not HTTP            | 400    |
      | Content-Length and Transfer-Encoding both  | 400    |
      | two different Content-Length headers       | 400    |
      | a chunked body with a broken chunk size    | 400    |
      | a header line of 20000 bytes               | 400    |
      | 200 header lines                           | 400    |
      | a JSON body nested 50000 levels            | 400    |
      | a body that is not UTF-8                   | 400    |
      | a gzip body that is not gzip               | 400    |
      | a body in an unknown Content-Encoding      | 415    |

  Scenario: A JSON body nested too deep is refused with JSON_TOO_DEEP naming the limit
    When I send "a JSON body nested 50000 levels" to the queen, the hive and the worker
    Then each answer's error code is "JSON_TOO_DEEP" with max_depth 64

  Scenario: An oversized Authorization header leaves no trace of the token in any log
    When I send "an Authorization header of 20000 bytes that starts with the token" to the queen, the hive and the worker
    Then each answered 400 and closed the connection
    And no log contains a token
    And no daemon's log has a traceback

  Scenario: Request headers that never finish are closed within the header timeout
    When I send request headers without their end to the queen, the hive and the worker
    Then each closed the connection within 1 to 3 seconds without an answer
    And the queen, the hive and the worker still serve their health check and a real request
    And no daemon's log has a traceback

  Scenario: A connection that sends nothing is closed within the header timeout
    When I open a connection and send nothing to the queen, the hive and the worker
    Then each closed the connection within 1 to 3 seconds without an answer
    And the queen, the hive and the worker still serve their health check and a real request

  Scenario: A body slower than the body timeout is answered 408 and closed
    When I send a body one byte a second to the queen, the hive and the worker
    Then each answered 408 with error code "REQUEST_TIMEOUT" within 3 seconds and closed the connection
    And the queen, the hive and the worker still serve their health check and a real request
    And no daemon's log has a traceback

  Scenario: An idle keep-alive connection is closed after the idle timeout
    When I send one request and then nothing on a kept-alive connection to the queen, the hive and the worker
    Then each answered 200, then closed the connection within 2 to 4 seconds
    And the queen, the hive and the worker still serve their health check and a real request

  Scenario: A streamed answer longer than every timeout is not cut
    Given a native task of many tokens streams through the queen
    Then it ends with an "end" event after streaming for more than 3 seconds

  Scenario: Connections beyond the cap from one address are answered 503 and logged once
    When I open 40 connections at once to the queen, the hive and the worker
    Then each refused some of them with 503 and error code "TOO_MANY_CONNECTIONS"
    And each daemon's log reports the refusals from 127.0.0.1 once
    And after those connections close, the queen, the hive and the worker still serve their health check and a real request
    And no daemon's log has a traceback
