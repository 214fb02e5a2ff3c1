/* pbxlink settings page: plain JS, no build step, no outside library.
 *
 * The server put everything this script needs in #pbxlink-config (member id, the user's Bitrix24 token, the
 * page's words). Every API call sends the token as a header (never a cookie). Bitrix24's BX24 library is used
 * only when it is there: inside Bitrix24's frame it is loaded to fit the frame to the page and to renew an
 * expired token; the page works without it. Everything is built with DOM calls and textContent: nothing from
 * the server is ever parsed as HTML.
 */
(function () {
  "use strict";

  var config = JSON.parse(document.getElementById("pbxlink-config").textContent);
  var words = config.strings || {};
  var auth = config.auth;
  var viewer = config.viewer || {};
  var root = document.getElementById("app");
  var locale = config.lang === "ru" ? "ru-RU" : "en-GB";

  function t(key) {
    return Object.prototype.hasOwnProperty.call(words, key) ? words[key] : key;
  }

  // A value the server names (a status, a result): its word, or the value itself if the page has none.
  function word(prefix, value) {
    return Object.prototype.hasOwnProperty.call(words, prefix + value) ? words[prefix + value] : String(value);
  }

  function h(tag, attrs) {
    var el = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (name) {
      var value = attrs[name];
      if (value === null || value === undefined || value === false) return;
      if (name === "text") el.textContent = value;
      else if (name.slice(0, 2) === "on") el.addEventListener(name.slice(2), value);
      else if (name === "checked" || name === "value" || name === "selected" || name === "disabled") el[name] = value;
      else el.setAttribute(name, value === true ? "" : String(value));
    });
    for (var i = 2; i < arguments.length; i++) append(el, arguments[i]);
    return el;
  }

  function append(el) {
    for (var i = 1; i < arguments.length; i++) {
      var child = arguments[i];
      if (child === null || child === undefined || child === false) continue;
      if (Array.isArray(child)) child.forEach(function (c) { append(el, c); });
      else el.appendChild(typeof child === "string" || typeof child === "number" ? document.createTextNode(String(child)) : child);
    }
    return el;
  }

  function clear(el) {
    while (el.firstChild) el.removeChild(el.firstChild);
    return el;
  }

  function when(iso) {
    if (!iso) return t("none");
    var date = new Date(iso);
    return isNaN(date.getTime()) ? String(iso) : date.toLocaleString(locale);
  }

  function orNone(value) {
    return value === null || value === undefined || value === "" ? t("none") : String(value);
  }

  /* -- Bitrix24's frame (optional) ------------------------------------------------------------------------- */
  var inFrame = (function () {
    try { return window.top !== window.self; } catch (e) { return true; }
  })();

  function fit() {
    if (window.BX24 && typeof window.BX24.fitWindow === "function") {
      try { window.BX24.fitWindow(); } catch (e) { /* outside Bitrix24 */ }
    }
  }

  if (inFrame && !window.BX24) {
    var script = document.createElement("script");
    script.src = "https://api.bitrix24.com/api/v1/";
    script.async = true;
    script.onload = function () {
      if (window.BX24 && typeof window.BX24.init === "function") window.BX24.init(fit);
    };
    document.head.appendChild(script);
  }

  function renewedToken() {
    return new Promise(function (resolve) {
      if (!window.BX24 || typeof window.BX24.refreshAuth !== "function") return resolve(null);
      try {
        window.BX24.refreshAuth(function (result) { resolve(result && result.access_token ? result.access_token : null); });
      } catch (e) { resolve(null); }
    });
  }

  /* -- the API ---------------------------------------------------------------------------------------------- */
  function request(method, path, body) {
    var options = {
      method: method,
      credentials: "omit",
      cache: "no-store",
      headers: { "Authorization": "Bearer " + auth, "X-B24-Member-Id": config.member_id, "Accept": "application/json" }
    };
    if (body !== undefined) {
      options.headers["Content-Type"] = "application/json";
      options.body = JSON.stringify(body);
    }
    return fetch("api/" + path, options).then(function (response) {
      return response.json().catch(function () { return {}; }).then(function (data) {
        if (!response.ok) {
          var error = new Error(data.message || ("HTTP " + response.status));
          error.status = response.status;
          error.code = data.error;
          error.fields = data.fields || {};
          throw error;
        }
        return data;
      });
    });
  }

  function api(method, path, body) {
    return request(method, path, body).catch(function (error) {
      if (error.status !== 401 || error.code !== "token_expired") throw error;
      return renewedToken().then(function (token) {
        if (!token) throw error;
        auth = token;
        return request(method, path, body);
      });
    });
  }

  function explain(error) {
    if (error.status === 401) return t("error.session");
    if (error.status === 403) return t("error.forbidden");
    if (error.status === 503) return t("error.unavailable");
    if (error.code === "invalid_settings") return t("error.invalid");
    return t("error.generic") + error.message;
  }

  function notice(box, message, kind) {
    clear(box);
    box.className = "message " + (kind || "");
    box.textContent = message || "";
  }

  /* -- layout ----------------------------------------------------------------------------------------------- */
  var tabs = viewer.admin ? ["status", "agents", "extensions", "settings", "calls"] : ["status"];
  var loaders = {};
  var panels = {};
  var nav = h("nav", { "class": "tabs", role: "tablist" });
  clear(root);
  root.setAttribute("data-state", "ready");
  root.setAttribute("data-admin", viewer.admin ? "yes" : "no");
  append(root, h("header", {}, h("h1", { text: t("title") }), h("p", { "class": "muted", text: viewer.name || "" })));
  if (!viewer.admin) append(root, h("p", { "class": "notice", id: "readonly", text: t("readonly") }));
  append(root, nav);
  tabs.forEach(function (name) {
    panels[name] = h("section", { "class": "panel", id: "panel-" + name, hidden: true });
    append(nav, h("button", { type: "button", role: "tab", "data-tab": name, text: t("tab." + name), onclick: function () { show(name); } }));
    append(root, panels[name]);
  });

  function show(name) {
    tabs.forEach(function (other) {
      panels[other].hidden = other !== name;
      var button = nav.querySelector('[data-tab="' + other + '"]');
      button.setAttribute("aria-selected", other === name ? "true" : "false");
    });
    var panel = panels[name];
    clear(panel);
    append(panel, h("p", { "class": "muted", text: t("loading") }));
    loaders[name](panel).catch(function (error) {
      clear(panel);
      append(panel, h("p", { "class": "message error", text: explain(error) }));
    }).then(fit);
  }

  function refreshButton(name) {
    return h("button", { type: "button", "class": "secondary", text: t("refresh"), onclick: function () { show(name); } });
  }

  function table(headers, rows, attrs) {
    return h("table", attrs || {},
      h("thead", {}, h("tr", {}, headers.map(function (title) { return h("th", { text: title }); }))),
      h("tbody", {}, rows));
  }

  /* -- status ----------------------------------------------------------------------------------------------- */
  /* The agent's last check of the PBX's CDR against the CRM (cloud/reconcile): what was found, what was repaired. */
  function checkText(check) {
    if (!check) return t("none");
    var head = when(check.received_at) + " · ";
    if (check.error) return head + t("check.error") + ": " + check.error;
    var c = check.counts || {};
    var parts = [check.pbx_calls + " " + t("check.calls"), (c.in_crm || 0) + " " + t("check.in_crm")];
    if (c.pending) parts.push(c.pending + " " + t("check.pending"));
    if (check.resent) parts.push(check.resent + " " + t("check.resent"));
    if (check.queued) parts.push(check.queued + " " + t("check.queued"));
    if (c.failed) parts.push(c.failed + " " + t("check.failed"));
    if (c.differs) parts.push(c.differs + " " + t("check.differs"));
    if (!check.complete) parts.push(t("check.incomplete") + " (" + check.parts_received + "/" + check.parts + ")");
    return head + parts.join(", ");
  }

  function agentRows(agents, withRevoke, onRevoke) {
    return agents.map(function (agent) {
      var pbx = agent.pbx_version ? agent.pbx_version + (agent.ami_version ? " (AMI " + agent.ami_version + ")" : "") : t("none");
      var last = agent.last_event ? when(agent.last_event.at) + " · " + agent.last_event.type : t("none");
      var ami = agent.ami_connected === true ? t("yes") : agent.ami_connected === false ? t("no") : t("none");
      var cells = [
        h("td", {}, h("strong", { text: agent.name }), h("div", { "class": "muted small", text: agent.agent_id })),
        h("td", { "class": "state state-" + agent.state, text: word("state.", agent.state) }),
        h("td", { text: agent.connected_since ? when(agent.connected_since) : t("none") }),
        h("td", { text: orNone(agent.agent_version) }),
        h("td", { text: pbx }),
        h("td", { text: ami }),
        h("td", { text: when(agent.last_seen_at) }),
        h("td", { text: last }),
        h("td", { "class": "check" + (agent.last_check && (agent.last_check.error || (agent.last_check.counts || {}).failed) ? " warning" : ""),
          "data-check-id": agent.last_check ? agent.last_check.check_id : "", text: checkText(agent.last_check) })
      ];
      if (withRevoke) {
        cells.push(h("td", {}, agent.state === "revoked" ? h("span", { "class": "muted", text: when(agent.revoked_at) }) :
          h("button", { type: "button", "class": "danger", text: t("tokens.revoke"), onclick: function () { onRevoke(agent); } })));
      }
      return h("tr", { "data-agent-id": agent.agent_id, "data-state": agent.state }, cells);
    });
  }

  function agentHeaders(withRevoke) {
    var headers = [t("agent.name"), t("agent.state"), t("agent.since"), t("agent.version"), t("agent.pbx"), t("agent.ami"),
      t("agent.last_seen"), t("agent.last_event"), t("agent.check")];
    return withRevoke ? headers.concat([""]) : headers;
  }

  function licenseBlock(license) {
    var rows = [[t("license.state"), word("license.state.", (license.state || "unknown"))]];
    if (license.plan) rows.push([t("license.plan"), license.plan]);
    if (license.ends_at) rows.push([t("license.ends"), when(license.ends_at)]);
    if (license.grace_ends_at) rows.push([t("license.grace"), when(license.grace_ends_at)]);
    if (license.users_with_cards) {
      var cards = license.users_with_cards;
      rows.push([t("license.cards"), cards.used + (cards.limit ? " / " + cards.limit : "")]);
    }
    if (license.reason) rows.push([t("license.reason"), license.reason]);
    var order = null;
    if (license.card_users && license.card_users.length) {
      order = [h("p", { "class": "muted", text: t("license.card_order") }),
        h("ol", { id: "card-order" }, license.card_users.map(function (user) {
          return h("li", { "data-user-id": user.id },
            (user.name || "#" + user.id) + " · ",
            h("span", { "class": user.has_card ? "ok" : "warning", text: t(user.has_card ? "license.has_card" : "license.waiting") }),
            viewer.admin ? h("button", { type: "button", "class": "link", text: t("license.free"), onclick: function () {
              if (!window.confirm(t("license.confirm_free"))) return;
              api("DELETE", "card_users/" + encodeURIComponent(user.id)).then(function () { show("status"); })
                .catch(function (error) { window.alert(explain(error)); });
            } }) : null);
        }))];
    }
    return h("div", { "class": "card", id: "license", "data-state": license.state || "unknown" },
      h("h2", { text: t("license.title") }),
      h("dl", {}, rows.map(function (row) { return [h("dt", { text: row[0] }), h("dd", { text: row[1] })]; })),
      order);
  }

  loaders.status = function (panel) {
    return api("GET", "status").then(function (data) {
      clear(panel);
      append(panel, h("div", { "class": "toolbar" }, h("h2", { text: t("agents.title") }), refreshButton("status")));
      if (!data.agents.length) append(panel, h("p", { "class": "muted", text: t("agents.none") }));
      else append(panel, table(agentHeaders(false), agentRows(data.agents, false), { id: "status-agents" }));
      append(panel, licenseBlock(data.license || {}));
    });
  };

  /* -- agents and tokens -------------------------------------------------------------------------------------- */
  loaders.agents = function (panel) {
    return api("GET", "status").then(function (data) {
      clear(panel);
      var message = h("div", { "class": "message", id: "tokens-message", role: "status" });
      var name = h("input", { type: "text", id: "token-name", maxlength: 100, placeholder: t("tokens.name"), "aria-label": t("tokens.name") });
      var result = h("div", { id: "token-result" });
      var create = h("button", { type: "button", id: "token-create", text: t("tokens.create"), onclick: function () {
        create.disabled = true;
        api("POST", "tokens", { name: name.value }).then(function (created) {
          clear(result);
          append(result, h("div", { "class": "card secret" },
            h("p", { "class": "warning", text: t("tokens.once") }),
            h("code", { id: "token-value", text: created.token }),
            h("p", { text: t("tokens.command") }),
            h("pre", {}, h("code", { id: "token-command", text: created.command }))));
          name.value = "";
          notice(message, "");
          return api("GET", "status").then(function (fresh) { renderTable(fresh.agents); });
        }).catch(function (error) { notice(message, explain(error), "error"); })
          .then(function () { create.disabled = false; fit(); });
      } });
      var tableBox = h("div", { id: "agents-box" });
      function revoke(agent) {
        if (!window.confirm(t("tokens.confirm_revoke"))) return;
        api("DELETE", "tokens/" + encodeURIComponent(agent.agent_id)).then(function () {
          notice(message, t("tokens.revoked"), "ok");
          return api("GET", "status").then(function (fresh) { renderTable(fresh.agents); });
        }).catch(function (error) { notice(message, explain(error), "error"); });
      }
      function renderTable(agents) {
        clear(tableBox);
        if (!agents.length) append(tableBox, h("p", { "class": "muted", text: t("agents.none") }));
        else append(tableBox, table(agentHeaders(true), agentRows(agents, true, revoke), { id: "agents-table" }));
        fit();
      }
      append(panel,
        h("div", { "class": "card" }, h("h2", { text: t("tokens.title") }), h("p", { "class": "muted", text: t("tokens.help") }),
          h("div", { "class": "row" }, name, create), result),
        message,
        h("div", { "class": "toolbar" }, h("h2", { text: t("agents.title") }), refreshButton("agents")),
        tableBox);
      renderTable(data.agents);
    });
  };

  /* -- extensions --------------------------------------------------------------------------------------------- */
  function userSelect(users, value, emptyLabel, extra) {
    var select = h("select", {});
    (extra || []).forEach(function (option) { append(select, h("option", { value: option[0], text: option[1] })); });
    if (emptyLabel !== null) append(select, h("option", { value: "", text: emptyLabel }));
    var known = false;
    users.forEach(function (user) {
      if (String(user.id) === String(value)) known = true;
      append(select, h("option", { value: String(user.id), text: user.name + (user.extension ? " (" + user.extension + ")" : "") }));
    });
    if (value !== null && value !== undefined && value !== "" && !known && !isNaN(Number(value))) {
      append(select, h("option", { value: String(value), text: "#" + value }));
    }
    select.value = value === null || value === undefined ? "" : String(value);
    return select;
  }

  loaders.extensions = function (panel) {
    return api("GET", "extensions").then(function (data) {
      clear(panel);
      var message = h("div", { "class": "message", id: "extensions-message", role: "status" });
      var choices = [];  // [extension, select]
      var userName = {};
      data.users.forEach(function (user) { userName[user.id] = user.name; });

      function row(extension, current, source, bitrix24User) {
        var asBitrix24 = t("ext.as_bitrix24") + (bitrix24User ? " (" + (userName[bitrix24User] || "#" + bitrix24User) + ")" : "");
        var value = current === undefined ? "" : current === null ? "none" : String(current);
        var select = userSelect(data.users, value === "none" ? "" : value, null, [["", asBitrix24], ["none", t("ext.no_user")]]);
        select.value = value;
        choices.push([extension, select]);
        return h("tr", { "data-extension": extension },
          h("td", { text: extension }), h("td", {}, select),
          h("td", { "class": "muted", text: word("ext.source.", source) }));
      }

      var rows = data.extensions.map(function (item) {
        return row(item.extension, item.overridden ? item.user_id : undefined, item.source, item.bitrix24_user_id);
      });
      var unmappedRows = data.unmapped.map(function (item) {
        var tr = row(item.extension, undefined, "none", null);
        append(tr, h("td", { "class": "muted", text: when(item.last_seen) }));
        return tr;
      });
      var newExtension = h("input", { type: "text", id: "new-extension", maxlength: 40, placeholder: t("ext.new"), "aria-label": t("ext.new") });
      var newUser = userSelect(data.users, "", t("none"));
      var save = h("button", { type: "button", id: "extensions-save", text: t("save"), onclick: function () {
        var overrides = {};
        choices.forEach(function (choice) {
          var value = choice[1].value;
          if (value === "none") overrides[choice[0]] = null;
          else if (value !== "") overrides[choice[0]] = Number(value);
        });
        if (newExtension.value.trim() && newUser.value !== "") overrides[newExtension.value.trim()] = Number(newUser.value);
        save.disabled = true;
        api("PATCH", "settings", { extension_overrides: overrides }).then(function () {
          notice(message, t("saved"), "ok");
          show("extensions");
        }).catch(function (error) {
          var details = Object.keys(error.fields || {}).map(function (k) { return k + ": " + error.fields[k]; }).join("; ");
          notice(message, explain(error) + (details ? " " + details : ""), "error");
        }).then(function () { save.disabled = false; });
      } });

      append(panel,
        h("div", { "class": "toolbar" }, h("h2", { text: t("ext.title") }),
          h("button", { type: "button", "class": "secondary", text: t("refresh"), onclick: function () {
            api("GET", "extensions?refresh=1").then(function () { show("extensions"); })
              .catch(function (error) { notice(message, explain(error), "error"); });
          } })),
        h("p", { "class": "muted", text: t("ext.help") }),
        data.warning ? h("p", { "class": "message warning", id: "warning", text: t("warn." + data.warning) }) : null,
        data.fetched_at ? h("p", { "class": "muted small", text: t("ext.fetched") + " " + when(data.fetched_at) }) : null,
        table([t("ext.extension"), t("ext.user"), t("ext.source")], rows, { id: "extensions-table" }),
        h("h3", { text: t("ext.unmapped") }),
        unmappedRows.length ? table([t("ext.extension"), t("ext.user"), t("ext.source"), t("ext.last_seen")], unmappedRows, { id: "unmapped-table" })
          : h("p", { "class": "muted", id: "unmapped-none", text: t("ext.unmapped_none") }),
        h("div", { "class": "row" }, newExtension, newUser),
        h("div", { "class": "row" }, save), message);
    });
  };

  /* -- settings: the form comes from the server's description of CrmSettings ------------------------------ */
  function label(path) { return t("f." + path); }

  function widget(spec, value, ctx) {
    // Returns {el, get(path, register)}: get(path) collects the value and registers where its errors go.
    var el;
    var kind = spec.kind;
    if (kind === "bool") {
      el = h("input", { type: "checkbox", checked: !!value });
      return { el: el, get: function (path, reg) { reg(path, el); return el.checked; } };
    }
    if (kind === "enum" || kind === "agent" || kind === "user") {
      el = h("select", {});
      var empty = value === null || value === undefined || value === "";
      if (spec.nullable || empty) append(el, h("option", { value: "", text: t("none") }));
      var options = kind === "enum" ? spec.options.map(function (o) { return [o, spec.labelled ? t("o." + o) : o]; })
        : kind === "agent" ? ctx.agents.map(function (a) { return [a.agent_id, a.name + " (" + a.agent_id + ")"]; })
        : ctx.users.map(function (u) { return [String(u.id), u.name + (u.extension ? " (" + u.extension + ")" : "")]; });
      var present = empty || options.some(function (o) { return o[0] === String(value); });
      if (!present) options.push([String(value), kind === "user" ? "#" + value : String(value)]);
      options.forEach(function (o) { append(el, h("option", { value: o[0], text: o[1] })); });
      el.value = empty ? "" : String(value);
      return { el: el, get: function (path, reg) {
        reg(path, el);
        if (el.value === "" && spec.nullable) return null;
        return kind === "user" && /^-?\d+$/.test(el.value) ? Number(el.value) : el.value;
      } };
    }
    if (kind === "int") {
      el = h("input", { type: "number", value: value === null || value === undefined ? "" : String(value), min: spec.minimum, max: spec.maximum });
      return { el: el, get: function (path, reg) {
        reg(path, el);
        var raw = el.value.trim();
        if (raw === "" && spec.nullable) return null;
        return /^-?\d+$/.test(raw) ? Number(raw) : raw;
      } };
    }
    if (kind === "str") {
      el = h("input", { type: "text", value: value === null || value === undefined ? "" : String(value), maxlength: spec.max_length });
      return { el: el, get: function (path, reg) { reg(path, el); return el.value === "" && spec.nullable ? null : el.value; } };
    }
    if (kind === "str_list") {
      el = h("textarea", { rows: 3, placeholder: t("settings.one_per_line") });
      el.value = (value || []).join("\n");
      return { el: el, get: function (path, reg) {
        reg(path, el);
        return el.value.split("\n").map(function (s) { return s.trim(); }).filter(Boolean);
      } };
    }
    if (kind === "enum_list") {
      el = h("ol", { "class": "ordered" });
      var chosen = (value || []).slice();
      spec.options.forEach(function (o) { if (chosen.indexOf(o) < 0) chosen.push(o); });
      chosen.forEach(function (o) {
        var li = h("li", { "data-option": o },
          h("label", {}, h("input", { type: "checkbox", checked: (value || []).indexOf(o) >= 0 }), " " + t("o." + o)),
          h("button", { type: "button", "class": "link", text: "↑ " + t("settings.up"), onclick: function () {
            if (li.previousElementSibling) el.insertBefore(li, li.previousElementSibling);
          } }));
        append(el, li);
      });
      return { el: el, get: function (path, reg) {
        reg(path, el);
        return Array.prototype.filter.call(el.children, function (li) { return li.querySelector("input").checked; })
          .map(function (li) { return li.getAttribute("data-option"); });
      } };
    }
    if (kind === "object") return objectWidget(spec, value, ctx);
    if (kind === "map") return mapWidget(spec, value || {}, ctx);
    el = h("textarea", { rows: 4 });
    el.value = value === null || value === undefined ? "" : JSON.stringify(value, null, 2);
    return { el: el, get: function (path, reg) {
      reg(path, el);
      if (el.value.trim() === "") return null;
      try { return JSON.parse(el.value); } catch (e) { return el.value; }
    } };
  }

  function fieldRow(spec, w) {
    var row = h("div", { "class": "field", "data-path": spec.path, "data-kind": spec.kind });
    if (spec.kind === "bool") append(row, h("label", {}, w.el, " " + label(spec.path)));
    else append(row, h("label", { text: label(spec.path) }), w.el);
    return row;
  }

  function objectWidget(spec, value, ctx) {
    var current = value === null || value === undefined ? null : value;
    var children = spec.children.map(function (child) {
      var name = child.path.split(".").pop();
      var source = current || spec.default || {};
      return { name: name, spec: child, w: widget(child, source[name], ctx) };
    });
    var box = h("fieldset", { "class": "object", "data-path": spec.path }, h("legend", { text: label(spec.path) }));
    var enabled = null;
    var inner = h("div", { "class": "children" }, children.map(function (c) {
      return c.spec.kind === "object" || c.spec.kind === "map" ? c.w.el : fieldRow(c.spec, c.w);
    }));
    if (spec.nullable) {
      enabled = h("input", { type: "checkbox", checked: current !== null });
      inner.hidden = current === null;
      enabled.addEventListener("change", function () { inner.hidden = !enabled.checked; fit(); });
      append(box, h("label", { "class": "toggle" }, enabled, " " + t("settings.custom")));
    }
    append(box, inner);
    return { el: box, get: function (path, reg) {
      reg(path, box);
      if (enabled && !enabled.checked) return null;
      var result = {};
      children.forEach(function (c) { result[c.name] = c.w.get(path + "." + c.name, reg); });
      return result;
    } };
  }

  function mapWidget(spec, value, ctx) {
    var columns = spec.value.kind === "object" ? spec.value.children : [spec.value];
    var body = h("tbody", {});
    var rows = [];
    function addRow(key, item) {
      var keyWidget = widget(spec.key, key, ctx);
      var fields = columns.map(function (column) {
        var name = column.path.split(".").pop();
        var source = spec.value.kind === "object" ? (item || spec.value.default || {})[name] : item;
        return { name: name, w: widget(column, source === undefined ? column.default : source, ctx) };
      });
      var entry = { key: keyWidget, fields: fields };
      var tr = h("tr", { "data-key": key === null || key === undefined ? "" : String(key) },
        h("td", {}, keyWidget.el), fields.map(function (f) { return h("td", {}, f.w.el); }),
        h("td", {}, h("button", { type: "button", "class": "link", text: t("remove"), onclick: function () {
          rows.splice(rows.indexOf(entry), 1);
          body.removeChild(tr);
          fit();
        } })));
      rows.push(entry);
      append(body, tr);
    }
    Object.keys(value).forEach(function (key) { addRow(key, value[key]); });
    var headers = [label(spec.key.path)].concat(columns.map(function (c) { return label(c.path); })).concat([""]);
    var box = h("fieldset", { "class": "map", "data-path": spec.path }, h("legend", { text: label(spec.path) }),
      h("table", {}, h("thead", {}, h("tr", {}, headers.map(function (x) { return h("th", { text: x }); }))), body),
      h("button", { type: "button", "class": "secondary add", text: t("add"), onclick: function () { addRow("", undefined); fit(); } }));
    return { el: box, get: function (path, reg) {
      reg(path, box);
      var result = {};
      rows.forEach(function (entry) {
        var key = entry.key.get(path + ".?", function () {});
        if (key === null || key === "") { reg(path, box); return; }
        var keyPath = path + "." + key;
        reg(keyPath, entry.key.el);
        if (spec.value.kind === "object") {
          var item = {};
          entry.fields.forEach(function (f) { item[f.name] = f.w.get(keyPath + "." + f.name, reg); });
          result[key] = item;
        } else {
          result[key] = entry.fields[0].w.get(keyPath, reg);
        }
      });
      return result;
    } };
  }

  loaders.settings = function (panel) {
    return api("GET", "settings").then(function (data) {
      clear(panel);
      var ctx = { users: data.users, agents: data.agents };
      var specs = data.form.filter(function (spec) { return spec.section === "settings"; });
      var widgets = specs.map(function (spec) { return { spec: spec, w: widget(spec, data.settings[spec.path], ctx) }; });
      var general = h("fieldset", { "class": "object" }, h("legend", { text: t("settings.general") }));
      var groups = [];
      widgets.forEach(function (item) {
        if (item.spec.kind === "object" || item.spec.kind === "map") groups.push(item.w.el);
        else append(general, fieldRow(item.spec, item.w));
      });
      var message = h("div", { "class": "message", id: "settings-message", role: "status" });
      var save = h("button", { type: "button", id: "settings-save", text: t("save"), onclick: function () {
        var where = {};
        var document_ = {};
        widgets.forEach(function (item) {
          document_[item.spec.path] = item.w.get(item.spec.path, function (path, el) { where[path] = el; });
        });
        Array.prototype.forEach.call(panel.querySelectorAll(".field-error"), function (el) { el.parentNode.removeChild(el); });
        Array.prototype.forEach.call(panel.querySelectorAll(".invalid"), function (el) { el.classList.remove("invalid"); });
        save.disabled = true;
        api("PATCH", "settings", document_).then(function () {
          notice(message, t("saved"), "ok");
        }).catch(function (error) {
          notice(message, explain(error), "error");
          Object.keys(error.fields || {}).forEach(function (path) {
            var parts = path.split(".");
            var target = null;
            while (parts.length && !target) { target = where[parts.join(".")] || null; parts.pop(); }
            var exact = Object.prototype.hasOwnProperty.call(where, path);
            var problem = h("div", { "class": "field-error", "data-error-path": path,
              text: exact ? error.fields[path] : path + ": " + error.fields[path] });
            if (target) {
              target.classList.add("invalid");
              target.parentNode.insertBefore(problem, target.nextSibling);
            } else {
              append(message, problem);
            }
          });
        }).then(function () { save.disabled = false; fit(); });
      } });
      append(panel, h("h2", { text: t("settings.title") }),
        data.warning ? h("p", { "class": "message warning", id: "warning", text: t("warn." + data.warning) }) : null,
        h("form", { id: "settings-form", onsubmit: function (e) { e.preventDefault(); } }, general, groups),
        h("div", { "class": "row sticky" }, save, message));
    });
  };

  /* -- calls -------------------------------------------------------------------------------------------------- */
  function person(user) { return user ? (user.name || "#" + user.id) : t("none"); }

  function callDetails(call) {
    var crm = call.crm;
    var facts = [
      [t("calls.agent"), call.agent_id], [t("calls.call_id"), call.call_id],
      [t("calls.rang"), call.rang.length ? call.rang.join(", ") : t("none")],
      [t("calls.answered_by"), orNone(call.answered_by)],
      [t("calls.transfers"), call.transfers.length ? call.transfers.map(function (x) {
        return (x.from || "?") + " → " + x.to + " (" + x.kind + ")";
      }).join("; ") : t("none")],
      [t("calls.recording"), orNone(call.recording)]
    ];
    var parts = [h("dl", { "class": "facts" }, facts.map(function (f) { return [h("dt", { text: f[0] }), h("dd", { text: f[1] })]; }))];
    if (!crm) {
      parts.push(h("p", { "class": "muted", text: t("crm.none") }));
      return parts;
    }
    var crmFacts = [[t("calls.crm"), word("crm.", crm.status)], [t("calls.requests"), String(crm.requests)]];
    if (crm.detail) crmFacts.push([t("calls.detail"), crm.detail]);
    if (crm.last_refusal) crmFacts.push([t("calls.detail"), crm.last_refusal]);
    if (crm.client) crmFacts.push([t("calls.client"), crm.client.entity + " · " + person(crm.client.responsible)]);
    if (crm.created_client) crmFacts.push([t("calls.created_client"), crm.created_client.entity]);
    if (crm.unmapped_extensions.length) crmFacts.push([t("calls.unmapped"), crm.unmapped_extensions.join(", ")]);
    parts.push(h("dl", { "class": "facts" }, crmFacts.map(function (f) { return [h("dt", { text: f[0] }), h("dd", { text: f[1] })]; })));
    if (crm.legs.length) {
      parts.push(table([t("calls.leg"), t("calls.b24_call_id"), t("calls.user"), t("calls.cards"), t("calls.finished_as"), t("calls.entity")],
        crm.legs.map(function (leg) {
          return h("tr", { "data-leg": leg.leg },
            h("td", { text: String(leg.leg + 1) }), h("td", {}, h("code", { text: orNone(leg.b24_call_id) })),
            h("td", { text: person(leg.user) }),
            h("td", { text: leg.shown_to.length ? leg.shown_to.map(person).join(", ") : t("nobody") }),
            h("td", { text: leg.finished ? orNone(leg.finished_as) : t("none") }),
            h("td", { text: orNone(leg.entity) + (leg.created_lead ? " (lead " + leg.created_lead + ")" : "") }));
        }), { "class": "legs" }));
    }
    return parts;
  }

  loaders.calls = function (panel) {
    return api("GET", "calls?limit=50").then(function (data) {
      clear(panel);
      append(panel, h("div", { "class": "toolbar" }, h("h2", { text: t("calls.title") }), refreshButton("calls")));
      if (!data.calls.length) {
        append(panel, h("p", { "class": "muted", text: t("calls.none") }));
        return;
      }
      var list = h("div", { id: "calls-list" });
      data.calls.forEach(function (call) {
        var result = call.result ? word("result.", call.result) : t("result.ongoing");
        var crm = call.crm ? word("crm.", call.crm.status) : t("crm.none");
        var summary = h("summary", {},
          h("span", { "class": "when", text: when(call.started_at) }),
          h("span", { text: call.direction ? word("dir.", call.direction) : t("none") }),
          h("span", { "class": "number", text: orNone(call.external_number || call.caller_extension) }),
          h("span", { text: orNone(call.line) }),
          h("span", { text: result }),
          h("span", { "class": "crm crm-" + (call.crm ? call.crm.status : "none"), text: crm }));
        var details = h("details", { "class": "call", "data-call-id": call.call_id }, summary, h("div", { "class": "trace" }, callDetails(call)));
        details.addEventListener("toggle", fit);
        append(list, details);
      });
      append(panel, list);
    });
  };

  show("status");
})();
