/*
 * HOPE's OHIF v3 configuration. HOPE serves this file at /ohif/app-config.js in place of the one bundled with
 * MONAI Label 0.8.5 (lib/hope/ohif.py); the OHIF build (3.10.0-beta.5) is MONAI Label's, unchanged.
 *
 * The annotator's path: study list (Orthanc through HOPE's DICOMweb proxy) -> "MONAI Label" mode -> connect the
 * MONAI Label panel and run spine_ct -> correct the suggestion with Brush / Eraser / Shapes in the Segmentation
 * panel -> Segmentation panel menu (...) -> Export & Download -> Export DICOM SEG. HOPE writes the DICOM SEG,
 * referencing the series, stores it in Orthanc, and counts it as the series' final label.
 *
 * What this file changes, all through OHIF's own configuration hooks (no OHIF rebuild):
 *  - the MONAI Label panel talks to the HOPE server that serves this page (not to <host>:8000);
 *  - the data source loads metadata per series (Orthanc's study-level metadata has main tags only);
 *  - the "MONAI Label" mode gets OHIF's Segmentation panel with Brush, Eraser and Shapes; the bundled mode has
 *    no way to edit or save (https://github.com/Project-MONAI/MONAILabel/issues/1805);
 *  - "Export DICOM SEG" saves through HOPE (see the "saving" section for why not through OHIF's SEG writer).
 *
 * `window.config` is a function (OHIF calls it with `peerImport`, its module loader) that also carries the plain
 * settings as properties, because parts of OHIF read `window.config.<setting>` directly.
 */
(function () {
  'use strict';

  var MONAI_LABEL_MODE = '@ohif/mode-monai-label';
  var SEGMENTATION_PANEL = '@ohif/extension-cornerstone.panelModule.panelSegmentationWithTools';

  // The MONAI Label panel reads its server from this cookie (default http://<host>:8000/). OHIF is served by
  // HOPE, so HOPE is this page's origin, on whatever port it runs.
  var server = window.location.origin + '/';
  ['/ohif', '/'].forEach(function (path) {
    document.cookie = 'MONAILABEL_SERVER_URL=' + escape(server) + '; path=' + path + '; SameSite=Lax';
  });

  var settings = {
    routerBasename: '/ohif/',
    showStudyList: true,
    extensions: [],
    modes: [],
    showWarningMessageForCrossOrigin: true,
    showCPUFallbackMessage: true,
    showLoadingIndicator: true,
    strictZSpacingForVolumeViewport: true,
    defaultDataSourceName: 'dicomweb',
    useSharedArrayBuffer: 'FALSE',
    dataSources: [
      {
        namespace: '@ohif/extension-default.dataSourcesModule.dicomweb',
        sourceName: 'dicomweb',
        configuration: {
          friendlyName: 'Orthanc through HOPE',
          name: 'Orthanc',
          wadoUriRoot: '/proxy/dicom/wado',
          qidoRoot: '/proxy/dicom/qido',
          wadoRoot: '/proxy/dicom/wado',
          // For OHIF's own stores (e.g. SR). OHIF 3.10 ignores it and posts to wadoRoot + /studies, which the
          // proxy forwards to the same DICOMweb server. Segmentations are saved through HOPE instead (below).
          stowRoot: '/proxy/dicom/stow',
          qidoSupportsIncludeField: true,
          supportsReject: false,
          imageRendering: 'wadors',
          thumbnailRendering: 'wadors',
          // Orthanc answers study-level metadata with main tags only (orthanc.json: StudiesMetadata
          // MainDicomTags), which OHIF cannot display; per-series metadata is complete (SeriesMetadata Full).
          enableStudyLazyLoad: true,
          supportsFuzzyMatching: true,
          supportsWildcard: true,
          dicomUploadEnabled: true,
          bulkDataURI: { enabled: true },
        },
      },
    ],
  };

  // Brush, Eraser and Shapes for the Segmentation panel's toolbox, as OHIF's Segmentation mode defines them. The
  // MONAI Label mode already registers the tools; it only lacks the buttons.
  function brushOptions(prefix, tools) {
    return [
      {
        name: 'Radius (mm)',
        id: prefix + '-radius',
        type: 'range',
        min: 0.5,
        max: 99.5,
        step: 0.5,
        value: 6,
        commands: { commandName: 'setBrushSize', commandOptions: { toolNames: tools } },
      },
      {
        name: 'Shape',
        type: 'radio',
        id: prefix + '-mode',
        value: tools[0],
        values: [
          { value: tools[0], label: 'Circle' },
          { value: tools[1], label: 'Sphere' },
        ],
        commands: 'setToolActiveToolbar',
      },
    ];
  }
  var BRUSH_TOOLS = {
    id: 'BrushTools',
    uiType: 'ohif.buttonGroup',
    props: {
      groupId: 'BrushTools',
      items: [
        {
          id: 'Brush',
          icon: 'icon-tool-brush',
          label: 'Brush',
          evaluate: {
            name: 'evaluate.cornerstone.segmentation',
            toolNames: ['CircularBrush', 'SphereBrush'],
            disabledText: 'Connect the MONAI Label panel (or add a segmentation) to enable this tool.',
          },
          options: brushOptions('brush', ['CircularBrush', 'SphereBrush']),
        },
        {
          id: 'Eraser',
          icon: 'icon-tool-eraser',
          label: 'Eraser',
          evaluate: {
            name: 'evaluate.cornerstone.segmentation',
            toolNames: ['CircularEraser', 'SphereEraser'],
          },
          options: brushOptions('eraser', ['CircularEraser', 'SphereEraser']),
        },
      ],
    },
  };

  var SHAPES = {
    id: 'Shapes',
    uiType: 'ohif.radioGroup',
    props: {
      label: 'Shapes',
      evaluate: {
        name: 'evaluate.cornerstone.segmentation',
        toolNames: ['CircleScissor', 'SphereScissor', 'RectangleScissor'],
      },
      icon: 'icon-tool-shape',
      options: [
        {
          name: 'Shape',
          type: 'radio',
          value: 'CircleScissor',
          id: 'shape-mode',
          values: [
            { value: 'CircleScissor', label: 'Circle' },
            { value: 'SphereScissor', label: 'Sphere' },
            { value: 'RectangleScissor', label: 'Rectangle' },
          ],
          commands: 'setToolActiveToolbar',
        },
      ],
    },
  };

  // ---------------------------------------------------------------------------------------------------- saving
  // "Export DICOM SEG" in the Segmentation panel saves to HOPE: the labelmap goes to PUT /datastore/label (tag
  // final) as NRRD on the volume's own grid, and HOPE writes the DICOM SEG (highdicom) and stores it in Orthanc by
  // STOW-RS. OHIF's own SEG writer is not used: in OHIF 3.10 it stores every slice's mask on the mirrored slice
  // (z flipped; https://github.com/OHIF/Viewers/issues/5038, https://github.com/OHIF/Viewers/issues/5183,
  // https://github.com/cornerstonejs/cornerstone3D/issues/2580), and its panel command has no data source.
  // HOPE checks the label against the series' grid (422 otherwise), so a label on the wrong grid never lands.

  function nrrd(volume, values) {
    var axis = function (i) {
      var d = volume.direction;
      return '(' + [d[3 * i], d[3 * i + 1], d[3 * i + 2]].map(function (v) {
        return v * volume.spacing[i];
      }).join(',') + ')';
    };
    var header = [
      'NRRD0004',
      'type: uint8',
      'dimension: 3',
      'space: left-posterior-superior',
      'sizes: ' + volume.dimensions.join(' '),
      'space directions: ' + [0, 1, 2].map(axis).join(' '),
      'kinds: domain domain domain',
      'encoding: raw',
      'space origin: (' + Array.from(volume.origin).join(',') + ')',
      '',
      '',
    ].join('\n');
    return new Blob([header, values], { type: 'application/octet-stream' });
  }

  function labelValues(labels) {
    var values = {};
    if (Array.isArray(labels)) {
      labels.forEach(function (name, index) {
        values[name] = index + 1;
      });
    } else {
      Object.keys(labels || {}).forEach(function (name) {
        values[name] = labels[name];
      });
    }
    return values;
  }

  async function hopeFinalLabel(services, segmentationId) {
    var segmentationService = services.segmentationService;
    var segmentation = segmentationService.getSegmentation(segmentationId);
    var volume = segmentation && segmentationService.getLabelmapVolume(segmentationId);
    if (!volume) {
      throw new Error('no labelmap to save: connect the MONAI Label panel and run a model, or draw first');
    }
    var reference = segmentation.representationData.Labelmap.referencedImageIds[0];
    var displaySet = services.displaySetService.getActiveDisplaySets().find(function (ds) {
      return (ds.imageIds || []).indexOf(reference) >= 0;
    });
    if (!displaySet) {
      throw new Error('cannot tell which series this segmentation belongs to');
    }
    var data = volume.voxelManager.getCompleteScalarDataArray();
    var present = new Uint8Array(256);
    for (var i = 0; i < data.length; i++) {
      present[data[i]] = 1;
    }
    var names = {};
    for (var index = 1; index < 256; index++) {
      if (present[index]) {
        var segment = segmentation.segments[index];
        names[index] = segment && segment.label ? segment.label : 'Segment ' + index;
      }
    }
    var used = Object.keys(names).map(function (k) {
      return names[k];
    });
    if (!used.length) {
      throw new Error('the segmentation is empty: run a model or draw before saving');
    }
    var info = await (await fetch('/info/')).json();
    var models = info.models || {};
    var fits = function (name) {
      var values = labelValues(models[name].labels);
      return used.every(function (label) {
        return label in values;
      });
    };
    var candidates = Object.keys(models).filter(fits);
    var task =
      candidates.find(function (name) {
        return models[name].type === 'segmentation';
      }) || candidates[0];
    if (!task) {
      throw new Error('segments ' + used.join(', ') + ' are not all labels of one HOPE task; rename or delete the others');
    }
    var values = labelValues(models[task].labels);
    var lookup = new Uint8Array(256);
    Object.keys(names).forEach(function (index) {
      lookup[index] = values[names[index]];
    });
    var out = new Uint8Array(data.length);
    for (var j = 0; j < data.length; j++) {
      out[j] = lookup[data[j]];
    }
    var form = new FormData();
    form.append('params', JSON.stringify({ description: 'HOPE final label (OHIF)', task: task }));
    form.append('label', nrrd(volume, out), 'label.nrrd');
    var url = '/datastore/label?tag=final&image=' + encodeURIComponent(displaySet.SeriesInstanceUID);
    var response = await fetch(url, { method: 'PUT', body: form });
    var body = await response.json().catch(function () {
      return {};
    });
    if (!response.ok) {
      throw new Error(body.detail || 'HTTP ' + response.status);
    }
    return body;
  }

  function installSave(context) {
    var commands = context.commandsManager.getContext('SEGMENTATION');
    var store = commands && commands.storeSegmentation;
    if (!store || store.hope) {
      return;
    }
    var services = context.servicesManager.services;
    var notifications = services.uiNotificationService;
    commands.storeSegmentation = Object.assign({}, store, {
      hope: true,
      // Returns nothing, so OHIF's report flow (if a caller uses it) adds no display set of its own.
      commandFn: async function (params) {
        var segmentationId = params && params.segmentationId;
        notifications.show({ title: 'HOPE', message: 'Saving the final label...', type: 'info', duration: 3000 });
        try {
          await hopeFinalLabel(services, segmentationId);
        } catch (error) {
          notifications.show({
            title: 'HOPE',
            message: 'Not saved: ' + (error && error.message ? error.message : error),
            type: 'error',
            duration: 15000,
          });
          return undefined;
        }
        notifications.show({
          title: 'HOPE',
          message: 'Saved to Orthanc as DICOM SEG: the final label of this series',
          type: 'success',
          duration: 8000,
        });
        return undefined;
      },
    });
    // "Download DICOM SEG" would hand out a SEG from the same flipping writer; point to the one in Orthanc.
    var download = commands.downloadSegmentation;
    if (download) {
      commands.downloadSegmentation = Object.assign({}, download, {
        commandFn: function () {
          notifications.show({
            title: 'HOPE',
            message:
              "Not downloaded: OHIF 3.10's SEG writer flips the slices. Save with Export DICOM SEG, then take the " +
              'SEG from Orthanc (Orthanc Explorer or DICOMweb).',
            type: 'warning',
            duration: 15000,
          });
        },
      });
    }
  }

  // The bundled MONAI Label mode, with the Segmentation panel (tools, segments, export) added on the right.
  function forAnnotators(monaiLabel) {
    return Object.assign({}, monaiLabel, {
      modeFactory: async function (args) {
        var mode = await monaiLabel.modeFactory(args);
        var onModeEnter = mode.onModeEnter;
        mode.onModeEnter = function (context) {
          var result = onModeEnter ? onModeEnter.apply(this, arguments) : undefined;
          var toolbar = context.servicesManager.services.toolbarService;
          // The bundled mode lists these two in its 'segmentationToolbox' section but never defines them.
          toolbar.addButtons([BRUSH_TOOLS, SHAPES]);
          installSave(context);
          return result;
        };
        mode.routes = mode.routes.map(function (route) {
          var layoutTemplate = route.layoutTemplate;
          return Object.assign({}, route, {
            layoutTemplate: function (props) {
              var layout = layoutTemplate(props);
              var right = layout.props.rightPanels || [];
              if (right.indexOf(SEGMENTATION_PANEL) < 0) {
                layout.props.rightPanels = right.concat([SEGMENTATION_PANEL]);
              }
              return layout;
            },
          });
        });
        return mode;
      },
    });
  }

  async function configure(app) {
    var modes = [];
    try {
      modes.push(forAnnotators(await app.peerImport(MONAI_LABEL_MODE)));
    } catch (error) {
      console.error('HOPE: cannot extend the MONAI Label mode; it runs as bundled, without editing or saving', error);
    }
    // Modes listed here load before OHIF's defaults; a default mode with the same id is then skipped.
    return Object.assign({}, settings, { modes: modes });
  }

  window.config = Object.assign(configure, settings);
})();
