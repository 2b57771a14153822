import eslint from '@eslint/js';
import tseslint from 'typescript-eslint';

export default tseslint.config(
  { ignores: ['dist/', 'coverage/', 'node_modules/', 'bench/out/', 'public/vendor/'] },
  eslint.configs.recommended,
  ...tseslint.configs.strictTypeChecked,
  {
    languageOptions: { parserOptions: { projectService: true, tsconfigRootDir: import.meta.dirname } },
    rules: {
      '@typescript-eslint/restrict-template-expressions': ['error', { allowNumber: true }],
      '@typescript-eslint/require-await': 'off',
      // `return next()` in middleware is the idiom this code base reads best with.
      '@typescript-eslint/no-confusing-void-expression': 'off',
      // Flags winston's transports, whose typings declare a class the package does not export as such.
      '@typescript-eslint/no-unsafe-class-instance-assignment': 'off',
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_' }],
    },
  },
  {
    files: ['**/*.js', '**/*.mjs'],
    extends: [tseslint.configs.disableTypeChecked],
    languageOptions: {
      globals: { module: 'writable', require: 'readonly', __dirname: 'readonly', process: 'readonly', console: 'readonly' },
    },
  },
  {
    // The demo page's scripts run in the browser as classic scripts, next to Socket.IO's `io` global.
    files: ['public/demo/**/*.js'],
    languageOptions: {
      sourceType: 'script',
      globals: {
        module: 'off',
        require: 'off',
        __dirname: 'off',
        process: 'off',
        window: 'readonly',
        document: 'readonly',
        location: 'readonly',
        navigator: 'readonly',
        performance: 'readonly',
        crypto: 'readonly',
        fetch: 'readonly',
        URLSearchParams: 'readonly',
        RTCPeerConnection: 'readonly',
        MediaStream: 'readonly',
        io: 'readonly',
      },
    },
  },
);
