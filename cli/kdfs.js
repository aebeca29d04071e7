#!/usr/bin/env node
require('./launch.js')('kdfs', 'kdfs');
