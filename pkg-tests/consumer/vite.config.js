// Relative asset URLs: the test server serves the build under /consumer/.
export default { base: './', build: { target: 'es2022' } };
