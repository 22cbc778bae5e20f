// dagd web UI: two small behaviours, written for this project (no libraries).
//
// 1. Live parts: every element with `data-live` and an `id` is replaced by the same element from a
//    fresh copy of the page: when the page's event stream (`data-live-url` on <body>, server-sent
//    events relayed from the supervisor's streams) says something changed, else every
//    `data-refresh-ms` milliseconds. Nothing is refreshed while the tab is hidden or while the
//    user is typing inside a live element.
// 2. Live log: `#run-log` follows `data-log-stream-url?after=SEQ` (server-sent events; falls back
//    to polling `data-log-url`) and appends new lines as text (never as HTML) until the run has
//    finished and no lines are left. The filter above it
//    (`#log-filter`) hides the lines that do not contain its text, as you type.
// 3. Launchpad: picking another job fills in that job's own tags, unless the tags were edited.
"use strict";

(function () {
  function liveElements(root) {
    return Array.prototype.filter.call(root.querySelectorAll("[data-live][id]"), function (el) {
      return el.id;
    });
  }

  function userIsEditing(el) {
    var active = document.activeElement;
    return active && el.contains(active) && /^(INPUT|TEXTAREA|SELECT)$/.test(active.tagName);
  }

  function refresh() {
    var targets = liveElements(document);
    if (!targets.length || document.hidden) {
      return Promise.resolve();
    }
    return fetch(window.location.href, {
      credentials: "same-origin",
      headers: { "X-Dagd-Refresh": "1" },
      redirect: "manual",
    })
      .then(function (response) {
        if (!response.ok) {
          throw new Error("refresh failed: " + response.status);
        }
        return response.text();
      })
      .then(function (html) {
        var fresh = new DOMParser().parseFromString(html, "text/html");
        targets.forEach(function (el) {
          var replacement = fresh.getElementById(el.id);
          if (replacement && !userIsEditing(el)) {
            el.replaceWith(document.importNode(replacement, true));
          }
        });
        document.body.removeAttribute("data-refresh-error");
      })
      .catch(function () {
        document.body.setAttribute("data-refresh-error", "true");
      });
  }

  // One refresh at a time; changes that arrive meanwhile cause one more refresh after it.
  function startStream(url, every) {
    var busy = false;
    var again = false;
    var run = function () {
      if (busy) {
        again = true;
        return;
      }
      busy = true;
      refresh().then(function () {
        busy = false;
        if (again) {
          again = false;
          run();
        }
      });
    };
    var source = new EventSource(url);
    source.addEventListener("change", run);
    // The stream is subscribed: show what changed between the page's render and now.
    source.addEventListener("ready", run);
    source.addEventListener("open", function () {
      document.body.removeAttribute("data-refresh-error");
    });
    source.addEventListener("error", function () {
      if (source.readyState === EventSource.CLOSED) {
        pollEvery(every); // the stream is gone for good: poll as before
      }
    });
    document.addEventListener("visibilitychange", function () {
      if (!document.hidden) {
        run(); // what changed while the tab was hidden
      }
    });
  }

  function startRefresh() {
    var every = parseInt(document.body.getAttribute("data-refresh-ms") || "0", 10);
    if (!liveElements(document).length) {
      return;
    }
    var url = document.body.getAttribute("data-live-url");
    if (url && window.EventSource) {
      startStream(url, every);
      return;
    }
    pollEvery(every);
  }

  function pollEvery(every) {
    if (!every) {
      return;
    }
    var tick = function () {
      refresh().then(function () {
        window.setTimeout(tick, every);
      });
    };
    window.setTimeout(tick, every);
  }

  // The same text as templates/run_log.html renders: the UTC time to the millisecond.
  function formatLine(line) {
    var at = (line.at || "").replace("T", " ").replace(/(\.\d{3})\d*Z$/, "$1Z");
    if (!/\.\d{3}Z$/.test(at)) {
      at = at.replace(/Z$/, ".000Z");
    }
    return at + " " + line.stream + " " + line.level + " " + line.message;
  }

  function logFilter() {
    var input = document.getElementById("log-filter");
    return input ? input.value.toLowerCase() : "";
  }

  function showIfMatching(el, filter) {
    el.hidden = filter !== "" && el.textContent.toLowerCase().indexOf(filter) === -1;
  }

  function lineElement(line) {
    var span = document.createElement("span");
    span.className = "log-line";
    span.textContent = formatLine(line) + "\n";
    showIfMatching(span, logFilter());
    return span;
  }

  function startLogFilter() {
    var input = document.getElementById("log-filter");
    var pre = document.getElementById("run-log");
    if (!input || !pre) {
      return;
    }
    input.addEventListener("input", function () {
      var filter = logFilter();
      Array.prototype.forEach.call(pre.querySelectorAll(".log-line"), function (el) {
        showIfMatching(el, filter);
      });
      var url = new URL(window.location.href);
      if (filter) {
        url.searchParams.set("q", input.value);
      } else {
        url.searchParams.delete("q");
      }
      window.history.replaceState(null, "", url.pathname + url.search + url.hash);
    });
  }

  function startJobTags() {
    var select = document.querySelector("form.launchpad select[name=job]");
    var tags = document.querySelector("form.launchpad textarea[name=tags]");
    if (!select || !tags) {
      return;
    }
    var shown = function () {
      var option = select.options[select.selectedIndex];
      return (option && option.getAttribute("data-tags")) || "";
    };
    var previous = shown();
    select.addEventListener("change", function () {
      if (tags.value === previous || tags.value === "") {
        tags.value = shown();
      }
      previous = shown();
    });
  }

  // Words come from the page (data-text-*), so they are in the page's language.
  function text(el, key, fallback) {
    return el.getAttribute("data-text-" + key) || fallback;
  }

  function startLogFollow() {
    var pre = document.getElementById("run-log");
    if (!pre) {
      return;
    }
    var url = pre.getAttribute("data-log-url");
    var after = parseInt(pre.getAttribute("data-after") || "0", 10);
    var state = document.getElementById("log-state");
    var append = function (lines) {
      var atBottom = pre.scrollTop + pre.clientHeight >= pre.scrollHeight - 8;
      var batch = document.createDocumentFragment();
      lines.forEach(function (line) {
        batch.appendChild(lineElement(line));
      });
      pre.appendChild(batch);
      after = lines[lines.length - 1].seq;
      pre.setAttribute("data-after", String(after));
      if (atBottom) {
        pre.scrollTop = pre.scrollHeight;
      }
    };
    var finish = function (status) {
      pre.setAttribute("data-finished", "true");
      if (state) {
        state.textContent = text(state, "finished", "The run has finished ({status}).").replace("{status}", status);
      }
    };
    var poll = function () {
      fetch(url + "?after=" + after, { credentials: "same-origin", headers: { Accept: "application/json" } })
        .then(function (response) {
          if (!response.ok) {
            throw new Error("log fetch failed: " + response.status);
          }
          return response.json();
        })
        .then(function (data) {
          if (data.lines.length) {
            append(data.lines);
          }
          if (data.more) {
            window.setTimeout(poll, 0);
          } else if (data.finished) {
            finish(data.status);
          } else {
            window.setTimeout(poll, 1000);
          }
        })
        .catch(function () {
          if (state) {
            state.textContent = text(state, "lost", "Lost the log stream; retrying…");
          }
          window.setTimeout(poll, 3000);
        });
    };
    var streamUrl = pre.getAttribute("data-log-stream-url");
    if (streamUrl && window.EventSource && pre.getAttribute("data-finished") !== "true") {
      var source = new EventSource(streamUrl + "?after=" + after);
      source.addEventListener("lines", function (event) {
        append(JSON.parse(event.data));
      });
      source.addEventListener("end", function (event) {
        source.close();
        finish(JSON.parse(event.data));
      });
      source.addEventListener("error", function () {
        if (source.readyState === EventSource.CLOSED) {
          poll(); // no stream: poll as before
        } else if (state) {
          state.textContent = text(state, "lost", "Lost the log stream; retrying…");
        }
      });
      // A reconnect resumes after the last line shown: the browser sends its seq (Last-Event-ID).
      source.addEventListener("open", function () {
        if (state && pre.getAttribute("data-finished") !== "true") {
          state.textContent = text(state, "following", state.textContent);
        }
      });
      return;
    }
    poll();
  }

  // `?done=...` shows a one-time notice after a form; drop it so refreshes and reloads do not repeat it.
  function forgetNotice() {
    var url = new URL(window.location.href);
    if (url.searchParams.has("done")) {
      url.searchParams.delete("done");
      window.history.replaceState(null, "", url.pathname + url.search + url.hash);
    }
  }

  document.addEventListener("DOMContentLoaded", function () {
    forgetNotice();
    startRefresh();
    startLogFollow();
    startLogFilter();
    startJobTags();
  });
})();
