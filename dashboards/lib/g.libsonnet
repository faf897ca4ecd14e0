// A small Grafana helper library in the mixin style (grafonnet is not available here).
{
  datasource:: { type: 'prometheus', uid: '${datasource}' },

  target(expr, legend='', instant=false, format='time_series', ref='A'):: {
    datasource: $.datasource,
    expr: expr,
    legendFormat: legend,
    instant: instant,
    range: !instant,
    format: format,
    refId: ref,
  },

  panel(type, title, description, targets, unit, w, h, options={}, fieldConfig={}):: {
    type: type,
    title: title,
    description: description,
    datasource: $.datasource,
    targets: [targets[i] { refId: std.char(65 + i) } for i in std.range(0, std.length(targets) - 1)],
    fieldConfig: { defaults: { unit: unit } + fieldConfig, overrides: [] },
    options: options,
    gridPos: { w: w, h: h },
  },

  stat(title, description, expr, unit, w=6, h=4)::
    $.panel('stat',
            title,
            description,
            [$.target(expr, instant=true)],
            unit,
            w,
            h,
            { reduceOptions: { calcs: ['lastNotNull'] }, colorMode: 'value', graphMode: 'none' }),

  timeseries(title, description, targets, unit, w=12, h=8, stacked=false)::
    $.panel('timeseries',
            title,
            description,
            targets,
            unit,
            w,
            h,
            { legend: { displayMode: 'table', placement: 'right', calcs: ['mean', 'lastNotNull'] } },
            { custom: { stacking: { mode: if stacked then 'normal' else 'none' }, fillOpacity: if stacked then 40 else 10 } }),

  bars(title, description, expr, legend, unit, w=12, h=8)::
    $.panel('bargauge',
            title,
            description,
            [$.target(expr, legend, instant=true)],
            unit,
            w,
            h,
            { orientation: 'horizontal', displayMode: 'gradient', reduceOptions: { calcs: ['lastNotNull'] } }),

  table(title, description, targets, unit, w=24, h=8)::
    $.panel('table',
            title,
            description,
            [t { instant: true, range: false, format: 'table' } for t in targets],
            unit,
            w,
            h,
            { showHeader: true }) + { transformations: [{ id: 'merge' }] },

  // Place rows of panels on the 24-column grid and number them.
  layout(rows)::
    local heights = [std.foldl(function(m, p) std.max(m, p.gridPos.h), row, 0) for row in rows];
    local ys = [std.foldl(function(s, i) s + heights[i], std.range(0, r - 1), 0) for r in std.range(0, std.length(rows) - 1)];
    local placed = [
      rows[r][i] { gridPos+: { y: ys[r], x: std.foldl(function(s, j) s + rows[r][j].gridPos.w, std.range(0, i - 1), 0) } }
      for r in std.range(0, std.length(rows) - 1)
      for i in std.range(0, std.length(rows[r]) - 1)
    ];
    [placed[i] { id: i + 1 } for i in std.range(0, std.length(placed) - 1)],

  variables(c, team=true, namespace=true):: [
                                              { name: 'datasource', label: 'Data source', type: 'datasource', query: 'prometheus', current: {}, hide: 0 },
                                              $.query('cluster', 'Cluster', 'label_values(chargeback_up{%s}, %s)' % [c.chargebackSelector, c.clusterLabel]),
                                            ] + (if team then [$.query('team', 'Team', 'label_values(chargeback_namespace_cost_total{%s, %s=~"$cluster"}, team)' % [c.chargebackSelector, c.clusterLabel])] else [])
                                            + (if namespace then [$.query('namespace', 'Namespace', 'label_values(chargeback_namespace_cost_total{%s, %s=~"$cluster", team=~"$team"}, namespace)' % [c.chargebackSelector, c.clusterLabel])] else []),

  query(name, label, q):: {
    name: name,
    label: label,
    type: 'query',
    datasource: $.datasource,
    query: { query: q, refId: name },
    definition: q,
    includeAll: true,
    allValue: '.*',
    multi: true,
    refresh: 2,
    sort: 1,
    current: { selected: true, text: ['All'], value: ['$__all'] },
  },

  dashboard(c, key, title, description, rows, team=true, namespace=true):: {
    uid: c.uids[key],
    title: title,
    description: description,
    tags: c.tags,
    schemaVersion: 39,
    version: 1,
    editable: true,
    timezone: 'utc',
    refresh: c.refresh,
    time: { from: c.defaultFrom, to: 'now' },
    links: [{ title: 'Cost dashboards', type: 'dashboards', tags: ['chargeback'], asDropdown: true, includeVars: true, keepTime: true }],
    templating: { list: $.variables(c, team, namespace) },
    panels: $.layout(rows),
  },
}
